"""A path nested too deeply for jsonpath-ng is refused at load, where it compiled and then
failed on every document; unions of thousands of names or indexes, and long chains of
native steps, work."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonpath_ng.ext.parser import parse as ext_parse

from hub.config import ConfigError, load
from hub.mapping import paths
from hub.mapping.engine import apply
from hub.mapping.model import CaptureRequest
from hub.mapping.paths import NativePath, PathError, compile_path
from hub.mapping.values import DocumentError
from tests.support.server import leadhub_run

TERMS = 3000
ENDPOINT = "kind: endpoint\nname: z\nsource: none\n---\n"
MAPPING = "name: m\nendpoint: z\nfields:\n  EmailAddress: $.email\n"  # lines 5-8


def _write(tmp_path: Path, field: str, match: str = "") -> Path:
    text = ENDPOINT + MAPPING + f'  mx_Deep: "{field}"\n' + match  # mx_Deep on line 9
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "a.yaml"


@pytest.mark.parametrize(
    ("path", "document", "value"),
    [
        ("$[" + ",".join(f"'k{i}'" for i in range(TERMS)) + "]", {"k2999": "last"}, "last"),
        ("$.x[" + ",".join(str(i) for i in range(TERMS)) + "]", {"x": ["first"]}, "first"),
        ("$.x[" + ",".join(str(-i) for i in range(1, TERMS)) + "]", {"x": [1, 2]}, "2"),
    ],
)
def test_a_union_of_thousands_of_names_or_indexes_maps(
    tmp_path: Path, path: str, document: Any, value: str
) -> None:
    """``$['a','b',...]`` and ``$.x[0,1,...]`` of 3,000 terms load and map every document
    (jsonpath-ng keeps such a union in one node; the hub now walks it natively)."""
    _write(tmp_path, path)
    mapping = load(tmp_path, {}).mappings["m"]
    assert isinstance(mapping.fields[1].path, NativePath)
    result = apply(mapping, {"email": "a@example.com", **document})
    assert isinstance(result, CaptureRequest)
    assert result.body[1] == {"Attribute": "mx_Deep", "Value": value}


def test_a_long_chain_ending_in_a_slice_finds_its_value() -> None:
    """3,000 steps then a slice were left to jsonpath-ng, which recursed once per step: every
    document failed ("nested too deeply"). Slices are native steps now."""
    document: Any = ["deep", "er"]
    for _ in range(TERMS):
        document = {"a": document}
    path = compile_path("$" + ".a" * TERMS + "[0:1]")
    assert path.values(document) == ["deep"]


#: Paths that stay with jsonpath-ng and nest thousands deep: each compiled, then failed on
#: every document with "the document is nested too deeply".
DEEP = {
    "union": "$.lead.(" + " | ".join(f"k{i}" for i in range(TERMS)) + ")",
    "regex": "$" + ".a" * TERMS + "[?(@.* =~ 'x')]",
    "descent": "$" + "..a" * 500 + ".`len`",
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jsonpath-ng's, on '|'
@pytest.mark.parametrize("name", list(DEEP))
def test_a_path_too_deep_for_jsonpath_ng_is_a_load_error_naming_the_fix(
    tmp_path: Path, name: str
) -> None:
    """Loading reports such a path at its line, with the bound and what to write instead."""
    text = DEEP[name]
    _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    where = str(tmp_path / "a.yaml")
    assert issue.startswith(f"{where}:9: field 'mx_Deep' of mapping 'm': JSONPath {text!r} nests")
    assert "more than the 200 jsonpath-ng can evaluate (every document would fail)" in issue
    assert "like $.lead['work_email','email'] or $.items[0,1,2]" in issue


def test_a_match_rule_too_deep_is_a_load_error(tmp_path: Path) -> None:
    """A ``match`` path (a key, so under YAML's 1,024 characters) is refused the same way."""
    text = "$" + ".a" * 300 + "[?(@.* =~ 'x')]"
    _write(tmp_path, "$.name", match=f'match:\n  "{text}": x\n')  # the rule's key on line 11
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    where = str(tmp_path / "a.yaml")
    assert issue.startswith(f"{where}:11: match of mapping 'm': JSONPath {text!r} nests 302 ")


def _regex_path(nesting: int) -> str:
    """A path jsonpath-ng evaluates (a regex on a wildcard) that nests exactly ``nesting``
    levels."""
    steps = nesting - 4
    while paths._nesting(ext_parse("$" + ".a" * steps + "[?(@.* =~ 'x')]")) < nesting:
        steps += 1
    text = "$" + ".a" * steps + "[?(@.* =~ 'x')]"
    assert paths._nesting(ext_parse(text)) == nesting
    return text


def _under(frames: int, call: Any) -> Any:
    """``call()`` with ``frames`` more frames on the stack (a dispatcher's, a test runner's)."""
    return call() if frames == 0 else _under(frames - 1, call)


def test_the_bound_leaves_room_under_any_caller() -> None:
    """jsonpath-ng's find takes one frame per level: from a bare interpreter it fails at 990
    levels, at 840 under 150 frames of caller. A path at the bound evaluates even with 600
    frames on the stack already; one level more is refused."""
    bound = paths.MAX_NESTING
    assert bound == 200
    text = _regex_path(bound)
    document: Any = [{"k": "x"}]
    for _ in range(text.count(".a")):
        document = {"a": document}
    frames = max(0, 600 - len(inspect.stack(0)))
    assert _under(frames, lambda: compile_path(text).values(document)) == [{"k": "x"}]
    over = _regex_path(bound + 1)
    with pytest.raises(PathError, match=f"nests {bound + 1} levels"):
        compile_path(over)
    with pytest.raises(DocumentError, match="nested too deeply"):  # what it did past it
        _evaluate_anyway(_regex_path(sys.getrecursionlimit()))


def _evaluate_anyway(text: str) -> Any:
    """Evaluate ``text`` with jsonpath-ng, past the bound (as the old hub did)."""
    expression = ext_parse(text)
    return paths.ExtendedPath(text=text, expression=expression).values({"a": 1})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jsonpath-ng's, on '&'
def test_an_intersection_is_a_path_error() -> None:
    """``&`` parses, but jsonpath-ng's find raises NotImplementedError: every document
    failed ("NotImplementedError: "). It is refused, naming a filter instead."""
    with pytest.raises(PathError) as info:
        compile_path("$.items[*].a & $.items[*].b")
    message = str(info.value)
    assert "uses '&', which jsonpath-ng reads but cannot evaluate" in message
    assert "$.items[?(@.a == 1 && @.b == 2)]" in message


def test_a_filter_on_a_path_of_a_thousand_names_compiles(tmp_path: Path) -> None:
    """A filter's relative path (``@.a.a...``) was compiled recursively: 1,500 names raised
    RecursionError out of load (a traceback from ``leadhub check``)."""
    relative = "@" + ".a" * 1500
    text = f"$.items[?({relative} == 1)].v"
    _write(tmp_path, text)
    mapping = load(tmp_path, {}).mappings["m"]
    path = mapping.fields[1].path
    assert isinstance(path, NativePath)
    deep: Any = 1
    for _ in range(1500):
        deep = {"a": deep}
    assert path.values({"items": [{"v": "no"}, {**deep, "v": "yes"}]}) == ["yes"]


def test_check_refuses_a_deep_union_with_its_line(tmp_path: Path) -> None:
    """``leadhub check`` (where jsonpath-ng's '|' only warns) exits 1 with file:line and
    the fix, no traceback; it took the path before, and every event of the mapping died."""
    written = _write(tmp_path, DEEP["union"])
    checked = leadhub_run(["check", str(tmp_path)])
    output = checked.stdout + checked.stderr
    assert "Traceback" not in output, output[-2000:]
    assert checked.returncode == 1, output[-2000:]
    assert f"{written}:9: field 'mx_Deep' of mapping 'm': JSONPath" in output
    assert "nests 3001 levels" in output and "$.lead['work_email','email']" in output
