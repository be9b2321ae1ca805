"""A mapping's ``default_region``: a code phone numbers know, or an error naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load

HEAD = "kind: endpoint\nname: e\nsource: none\n---\nname: m\nendpoint: e\nfields:\n"


def test_default_region_uk_names_gb(tmp_path: Path) -> None:
    """``default_region: UK`` (the common name, not the ISO code phone numbers use) is an
    error naming GB; any other unknown code is told the two-letter form."""
    for region, fix in (("uk", "write GB, the United Kingdom's code"), ("ZZ", "two letters")):
        (tmp_path / "m.yaml").write_text(
            HEAD.replace("fields:\n", f"default_region: {region}\nfields:\n")
            + "  Phone: {path: $.phone, transform: phone}\n"
        )
        with pytest.raises(ConfigError) as info:
            load(tmp_path, {})
        (issue,) = info.value.issues
        assert issue.startswith(f"{tmp_path / 'm.yaml'}:7: default_region {region.upper()!r}")
        assert fix in issue, issue
