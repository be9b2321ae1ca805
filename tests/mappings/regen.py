"""Rewrite every ``expected.json`` from the current mappings (review the diff after!)."""

from __future__ import annotations

import contextlib
import io
import json
import os

from hub.cli import main
from tests.mappings.cases import DEMO_ENV, SHIPPED, case_dirs


def regen() -> None:
    os.environ.update(DEMO_ENV)
    for case in case_dirs():
        endpoint = (case / "endpoint").read_text().strip()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(
                ["try", endpoint, str(case / "input.json"), "--config-dir", str(SHIPPED), "--json"]
            )
        result = json.loads(out.getvalue())
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        (case / "expected.json").write_text(text, encoding="utf-8")
        print(case.name, result["status"])


if __name__ == "__main__":
    regen()
