"""A custom field name Lead.Capture refuses is a ``check`` error at its line, with the name
to write: ``mx_Lead Score`` (a display name), ``"mx_Budget "`` (a stray space in quotes) and a
bare ``mx_`` started with ``mx_``, so ``check`` said nothing, and every lead of the mapping
went dead at dispatch (``MXInvalidInputException: Unknown attribute``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load
from hub.sandbox.attributes import canonical_name

HEAD = "kind: endpoint\nname: e\nsource: token\ntoken: t\n---\nname: m\nendpoint: e\nfields:\n"

# (the attribute as written in the file, the name the error says to write)
REFUSED = [
    ('"mx_Lead Score"', "mx_Lead_Score"),
    ('"mx_Budget "', "mx_Budget"),
    ("mx_", "mx_City"),
    ("mx_Prix €", "mx_Prix"),
    ("mx_Ville·Code", "mx_Ville_Code"),
    ("mx_Source-Detail", "mx_Source_Detail"),
    ("MX_Plan Type", "mx_Plan_Type"),
]


@pytest.mark.parametrize(("written", "fix"), REFUSED, ids=[f for _, f in REFUSED])
def test_a_custom_field_name_the_api_refuses_is_an_error_naming_one_it_takes(
    tmp_path: Path, written: str, fix: str
) -> None:
    name = written.strip('"')
    assert canonical_name(name) is None  # the sandbox refuses it, as Lead.Capture does
    assert canonical_name(fix) is not None  # and takes the name the error says to write
    (tmp_path / "m.yaml").write_text(HEAD + "  EmailAddress: $.email\n  " + written + ": $.x\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert info.value.issues == [
        f"{tmp_path / 'm.yaml'}:10: attribute {name!r} of mapping 'm' is no custom field name "
        "LeadSquared takes (every lead would be refused): mx_ then letters, digits and _ only, "
        f"the field's schema name, like {fix!r}, not its display name"
    ]


def test_custom_field_names_the_api_takes_load(tmp_path: Path) -> None:
    """Letters, digits and _ after mx_, in any case: taken, and by the sandbox too."""
    names = ["mx_City", "mx_Lead_Score_2", "mx_x", "mx_ABC_def"]
    (tmp_path / "m.yaml").write_text(HEAD + "".join(f"  {n}: $.{i}\n" for i, n in enumerate(names)))
    mapping = load(tmp_path, {}).mappings["m"]
    assert [spec.attribute for spec in mapping.fields] == names
    assert all(canonical_name(n) is not None for n in names)


def test_a_name_whose_only_unusual_characters_are_letters_outside_ascii_is_a_warning(
    tmp_path: Path,
) -> None:
    """mx_Città, mx_शहर (Devanagari, with a vowel sign and a virama in mx_क्षेत्र): whether
    Lead.Capture takes such a schema name is not known, so they load with a warning at
    their line naming the characters; they were errors that refused the whole mapping."""
    names = ["mx_Città", "mx_शहर", "mx_क्षेत्र_2", "mx_Intérêt"]
    (tmp_path / "m.yaml").write_text(
        HEAD + "  EmailAddress: $.email\n" + "".join(f"  {n}: $.{i}\n" for i, n in enumerate(names))
    )
    config = load(tmp_path, {})
    assert [spec.attribute for spec in config.mappings["m"].fields][1:] == names
    assert all(canonical_name(n) is not None for n in names)  # the sandbox takes them too
    warned = [w for w in config.warnings if "of mapping 'm' holds letters or digits" in w]
    assert [w.split(": attribute")[0] for w in warned] == [
        f"{tmp_path / 'm.yaml'}:{line}" for line in (10, 11, 12, 13)
    ]
    assert warned[0].endswith(
        "attribute 'mx_Città' of mapping 'm' holds letters or digits outside ASCII (à); "
        "whether LeadSquared takes them in a custom field's schema name is not known (its own "
        "are mx_ then ASCII letters, digits and _): check the field's schema name in "
        "LeadSquared and write it as it is there"
    )


@pytest.mark.parametrize("written", ["${LSQ_FIELD}", "mx_${REGION}_Score"])
def test_a_variable_in_an_attribute_name_is_an_error_at_its_line(
    tmp_path: Path, written: str
) -> None:
    """``${VAR}`` is replaced in values only: as a field's attribute it was sent as written,
    and every lead refused, after a warning that it is no standard field (or an error that
    named ``mx_REGION_Score`` as the fix). Set or not, the variable is not the point."""
    (tmp_path / "m.yaml").write_text(HEAD + "  EmailAddress: $.email\n  " + written + ": $.x\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"LSQ_FIELD": "mx_City", "REGION": "North"})
    assert info.value.issues == [
        f"{tmp_path / 'm.yaml'}:10: attribute {written!r} in 'fields' of mapping 'm' is a key, "
        "and ${VAR} is replaced in values only (it would be sent as written, and every lead "
        "refused); write the LeadSquared attribute itself, like mx_City"
    ]
    assert not [w for w in info.value.warnings if "attribute" in w], info.value.warnings
