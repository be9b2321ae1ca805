"""A JSONPath of thousands of steps is compiled like any other: no RecursionError traceback."""

from __future__ import annotations

import json
from pathlib import Path

from hub.mapping.paths import NativePath, SimplePath, compile_path
from tests.support.server import leadhub_run

STEPS = 3000
ENDPOINT = "kind: endpoint\nname: x\nsource: none\n---\n"


def test_a_long_chain_compiles_and_finds_its_value() -> None:
    """Compiling recursed once per step: 1,000 steps were a RecursionError."""
    chain = compile_path("$" + ".a" * STEPS)
    assert isinstance(chain, SimplePath)
    document: object = "deep"
    for _ in range(STEPS):
        document = {"a": document}
    assert chain.values(document) == ["deep"]
    assert isinstance(compile_path("$" + "[0]" * STEPS), SimplePath)
    filtered = compile_path("$" + "[?(@.a==1)].b" * 1000)
    assert isinstance(filtered, NativePath)
    assert filtered.values({"a": 1}) == []


def test_check_and_try_take_a_mapping_with_a_long_path(tmp_path: Path) -> None:
    """`leadhub check` stopped with a traceback on such a mapping (so did serve and try)."""
    config = tmp_path / "cfg"
    config.mkdir()
    path = "$" + ".a" * STEPS
    (config / "x.yaml").write_text(
        ENDPOINT + f"name: m\nendpoint: x\nfields:\n  EmailAddress: {path}\n  LastName: $.name\n"
    )
    checked = leadhub_run(["check", str(config)])
    assert "Traceback" not in checked.stderr + checked.stdout, checked.stderr[-2000:]
    assert checked.returncode == 0, checked.stdout + checked.stderr
    payload = tmp_path / "lead.json"
    payload.write_text(json.dumps({"name": "Doe"}))
    tried = leadhub_run(["try", "x", str(payload), "--config-dir", str(config), "--json"])
    assert "Traceback" not in tried.stderr, tried.stderr[-2000:]
    assert json.loads(tried.stdout)["body"] == [{"Attribute": "LastName", "Value": "Doe"}]
