"""Mistakes made onboarding a sender or a form by hand (an indentation short, a list where a
path goes, a ``|`` meant as "else", a broken endpoint or target): each is one error at its
line that says how to fix it, never a traceback or a misleading follow-on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import ConfigError, load
from hub.config.models import HubSpotOptions
from hub.mapping import CaptureRequest, map_document
from tests.support.server import leadhub_run

ENDPOINT = "kind: endpoint\nname: site\nsource: token\ntoken: t\n---\n"
MAPPING = "kind: mapping\nname: m\nendpoint: site\n"  # lines 6-8 after ENDPOINT


def _problems(tmp_path: Path, text: str) -> ConfigError:
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    return caught.value


def test_a_list_for_a_field_is_an_error_at_its_line_not_a_traceback(tmp_path: Path) -> None:
    """``EmailAddress: [$.lead.email, $.email]`` (meant as "the first that is there") is an
    error at its line naming the forms that work, first the list under ``path`` with the
    paths written; ``leadhub check`` crashed on it."""
    text = ENDPOINT + MAPPING + "fields:\n  EmailAddress: [$.lead.email, $.email]\n"
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "hub", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout + done.stderr
    assert (
        f"{tmp_path / 'site.yaml'}:10: field 'EmailAddress' of mapping 'm' is a list, which "
        "a field does not take as it stands (the first path's value, or all their values?); "
        "for the first of these paths that gives a value write {path: [$.lead.email, $.email]}, "
        "for the first of several members of one object $.lead['work_email','email'], and for "
        "several values in one attribute {path: $.tags[*], transform: join(, )}"
    ) in out


@pytest.mark.parametrize(
    ("key", "value"), [("transform", "[trim, lower]"), ("required", "true"), ("path", "$.x")]
)
def test_a_field_key_indented_as_an_attribute_says_to_indent_it(
    tmp_path: Path, key: str, value: str
) -> None:
    """A field's key written one indentation short sits among the attributes; the error says
    to indent it under the field above, and no "not a standard field" warning or "write a
    JSONPath" error follows (it is no attribute)."""
    text = ENDPOINT + MAPPING + f"fields:\n  EmailAddress:\n    path: $.email\n  {key}: {value}\n"
    error = _problems(tmp_path, text)
    shown = str(tmp_path / "site.yaml")
    assert error.issues == [
        f"{shown}:12: {key!r} in 'fields' of mapping 'm' is a key of a field, not a "
        "LeadSquared attribute; indent it under 'EmailAddress', as deep as that field's 'path'"
    ]
    assert not [w for w in error.warnings if "standard LeadSquared field" in w]


def test_field_keys_and_attributes_at_the_mapping_level_say_where_they_belong(
    tmp_path: Path,
) -> None:
    """``transform:`` or ``FirstName:`` written at the mapping's own level (two indentations
    short, or ``fields:`` forgotten) is named as a field's key or an attribute, not given a
    "did you mean" of an unrelated key."""
    text = (
        ENDPOINT
        + MAPPING
        + "fields:\n  EmailAddress:\n    path: $.email\ntransform: [trim]\nFirstName: $.name\n"
    )
    issues = _problems(tmp_path, text).issues
    shown = str(tmp_path / "site.yaml")
    assert issues[0].startswith(
        f"{shown}:12: unknown key 'transform' in mapping 'm'; 'transform' is a key of a field: "
        "indent it under the attribute it is for in 'fields', as deep as that field's 'path'; "
        "known keys: "
    )
    assert issues[1].startswith(
        f"{shown}:13: unknown key 'FirstName' in mapping 'm'; 'FirstName' is a LeadSquared "
        "attribute: indent it under 'fields:'; known keys: "
    )
    assert len(issues) == 2


def test_a_typo_in_a_key_still_gets_did_you_mean(tmp_path: Path) -> None:
    """Keys that are neither a field's nor an attribute keep their "did you mean"."""
    issues = _problems(tmp_path, ENDPOINT + MAPPING + "skip_iff: {$.t: 1}\nfields: {Phone: $.p}\n")
    assert "unknown key 'skip_iff' in mapping 'm' (did you mean 'skip_if'?)" in issues.issues[0]


BROKEN_REFERENCED = """\
kind: target
name: partner
uri: https://api-in21.leadsquared.com
access_key: a
secret_key: b
---
kind: endpoint
name: zap
token: t
---
kind: mapping
name: m
endpoint: zap
target: partner
fields:
  EmailAddress: $.email
"""


def test_a_mapping_of_a_broken_endpoint_or_target_gets_no_not_defined_error(
    tmp_path: Path,
) -> None:
    """A target without its url and an endpoint without its source are each their own
    error; the mapping naming them is not told they are "not defined" (they are, with
    errors), which sent the user looking for a typo that was not there."""
    issues = _problems(tmp_path, BROKEN_REFERENCED).issues
    shown = str(tmp_path / "site.yaml")
    assert [i for i in issues if "not defined" in i] == []
    assert f"{shown}:1: target 'partner' needs 'url'" in issues
    assert any(i.startswith(f"{shown}:7: endpoint 'zap' needs 'source'") for i in issues)


def test_a_mapping_naming_an_endpoint_nobody_wrote_is_still_not_defined(tmp_path: Path) -> None:
    """The follow-on rule covers only names written: a typo is still reported."""
    text = BROKEN_REFERENCED.replace("endpoint: zap\ntarget", "endpoint: zpa\ntarget")
    issues = _problems(tmp_path, text).issues
    assert any(
        ":13: mapping 'm' takes events of endpoint 'zpa', which is not defined" in i for i in issues
    )


UNIONS = [
    ("field", "fields:\n  EmailAddress: $.lead.email | $.email\n", 10),
    ("field-path", "fields:\n  EmailAddress: {path: $.lead.email | $.email}\n", 10),
    ("match", "match: {$.form | $.form_id: abc}\nfields:\n  EmailAddress: $.email\n", 9),
]


@pytest.mark.parametrize(("where", "lines", "line"), UNIONS, ids=[u[0] for u in UNIONS])
def test_a_union_between_paths_is_refused(
    tmp_path: Path, where: str, lines: str, line: int
) -> None:
    """``$.lead.email | $.email`` reads as ``$.lead.(email | $).email`` (jsonpath-ng's
    precedence): it finds ``$.email`` only when ``lead`` exists, and never ``lead.email``
    alone; it was taken silently. The error says why and what works."""
    issues = _problems(tmp_path, ENDPOINT + MAPPING + lines).issues
    assert len(issues) == 1
    assert f"site.yaml:{line}: " in issues[0]
    assert "holds '|', which does not join two paths" in issues[0]
    assert "$.lead['work_email','email']" in issues[0]


def test_a_union_in_dedupe_is_refused_and_or_in_a_filter_is_not(tmp_path: Path) -> None:
    """``dedupe: $.id | $.submission_id`` is refused the same way, while ``||`` inside a
    filter and ``|`` inside a regular expression are parts of one path and compile."""
    text = (
        "kind: endpoint\nname: site\nsource: token\ntoken: t\ndedupe: $.id | $.submission_id\n"
        "---\n" + MAPPING + "fields:\n"
        "  EmailAddress: \"$.a[?(@.t == 'e' || @.t == 'm')].v\"\n"
        "  mx_X: \"$.a[?(@.t =~ 'x|y')].v\"\n"
    )
    issues = _problems(tmp_path, text).issues
    assert len(issues) == 1
    assert (
        "site.yaml:5: 'dedupe' of endpoint 'site': JSONPath '$.id | $.submission_id' holds"
        in (issues[0])
    )


def test_a_path_without_a_dot_after_the_root_says_so(tmp_path: Path) -> None:
    """``$lead.phone`` gets "write $.lead.phone" instead of a parser's "near token lead"."""
    issues = _problems(tmp_path, ENDPOINT + MAPPING + "fields:\n  Phone: $lead.phone\n").issues
    assert issues == [
        f"{tmp_path / 'site.yaml'}:10: field 'Phone' of mapping 'm': JSONPath '$lead.phone' "
        "needs a '.' after the '$' (the document's root); write $.lead.phone"
    ]


def test_a_syntax_error_brings_no_has_no_mapping_warning(tmp_path: Path) -> None:
    """An indentation mistake in a file's mapping document stops YAML there: the endpoint
    before it is read, its mapping is not. The error names the indentation; no warning says
    the endpoint "has no mapping" and its events will be unmatched (its mapping is there,
    unread)."""
    text = (
        ENDPOINT + MAPPING + "fields:\n  EmailAddress:\n    path: $.email\n"
        "  transform: [trim]\n    required: true\n"
    )
    error = _problems(tmp_path, text)
    assert len(error.issues) == 1
    assert error.issues[0].startswith(f"{tmp_path / 'site.yaml'}:12: YAML syntax error: ")
    assert "this line starts at column 2, less deep than the lines around it" in error.issues[0]
    assert [w for w in error.warnings if "has no mapping" in w] == []


def test_a_mapping_with_errors_brings_no_has_no_mapping_warning(tmp_path: Path) -> None:
    """``leadhub check``: a mapping left unusable by its errors (a match path that does not
    compile) is reported at its line; its endpoint gets no warning that it "has no mapping"
    and its events will be unmatched (it has one: the error says what to fix). An endpoint
    that truly has none is still warned of."""
    bad_match = 'match:\n  "$.form[": x\nfields:\n  EmailAddress: $.email\n'
    lonely = "---\nkind: endpoint\nname: lonely\nsource: token\ntoken: t\n"
    (tmp_path / "site.yaml").write_text(ENDPOINT + MAPPING + bad_match + lonely)
    done = leadhub_run(["check", str(tmp_path)])
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        f"{tmp_path / 'site.yaml'}:10: match of mapping 'm': JSONPath '$.form[' does not compile"
    )
    assert [line for line in lines if "has no mapping" in line] == [
        f"warning: {tmp_path / 'site.yaml'}:14: endpoint 'lonely' has no mapping; its events "
        "will be kept as unmatched"
    ]
    assert lines[-1] == f"{tmp_path}: 1 error"


#: Files with one YAML syntax error each (after ENDPOINT and MAPPING, lines 1-8), the line
#: a user must fix, and what the error says there.
MISPLACED = {
    # A field that lost its indentation mid-block: YAML takes it as a top-level key, and
    # stops at the next field (its value's text going on: "mapping values are not allowed").
    "field_at_column_0.yaml": (
        "fields:\n  EmailAddress: $.email\nFirstName: $.first\n  LastName: $.last\n",
        11,
        "this line starts at column 0 between indented lines (a key that lost its "
        "indentation), so YAML read it as a top-level key and stopped at line 12 (mapping "
        "values are not allowed here); indent it as deep as the keys beside it",
    ),
    "field_key_at_column_0.yaml": (
        "fields:\n  EmailAddress:\n    path: $.email\ntransform: lower\n    required: true\n",
        12,
        "stopped at line 13 (mapping values are not allowed here)",
    ),
    "field_at_column_0_then_a_comment.yaml": (
        "fields:\n  EmailAddress: $.email\nFirstName: $.first\n\n# the rest\n  Phone: $.phone\n",
        11,
        "stopped at line 14 (expected <block end>, but found '<block mapping start>')",
    ),
    "key_without_colon.yaml": (
        "fields:\n  EmailAddress: $.email\n  FirstName\n  LastName: $.last\n",
        11,
        "could not find expected ':'; the key on this line has no ':' after it",
    ),
    "unclosed_quote.yaml": (
        'fields:\n  EmailAddress: "$.email\n  LastName: $.last\n',
        10,
        "found unexpected end of stream; a quote opened on this line is never closed",
    ),
    # A field's key that lost one level of indentation (column 2 among a field's keys at
    # column 4, or 4 among 8): YAML takes it as a field and stops at the next key.
    "field_key_at_column_2.yaml": (
        "fields:\n  EmailAddress:\n    path: $.email\n  transform: lower\n    required: true\n",
        12,
        "this line starts at column 2, less deep than the lines around it (a key that lost "
        "its indentation), so YAML read it as a key of 'fields' and stopped at line 13 "
        "(mapping values are not allowed here); indent it as deep as the keys beside it",
    ),
    "field_key_at_column_4_of_8.yaml": (
        "fields:\n    Phone:\n        path: $.phone\n\n    # digits only\n"
        "    transform: [phone]\n        required: true\n",
        14,
        "this line starts at column 4, less deep than the lines around it (a key that lost "
        "its indentation), so YAML read it as a key of 'fields' and stopped at line 15 "
        "(expected <block end>, but found '<block mapping start>')",
    ),
    # A bracket never closed: YAML reads on to the file's end, the next document or the
    # next key's ':' as inside it; the bracket's line is the one to fix.
    "unclosed_bracket_at_the_end.yaml": (
        "fields:\n  EmailAddress:\n    path: $.email\n    transform: [trim, lower\n\n",
        12,
        "expected ',' or ']', but got '<stream end>'; the '[' opened on this line is never "
        "closed (the file ends inside it); close it with ']' after its last item",
    ),
    "unclosed_bracket_over_lines.yaml": (
        "fields:\n  EmailAddress:\n    path: $.email\n    transform: [trim,\n      lower\n# last\n",
        12,
        "the '[' opened on this line is never closed (the file ends inside it)",
    ),
    "bracket_closed_by_a_brace.yaml": (
        "fields:\n  mx_Tags: {path: $.tags, transform: [join(;)}\n",
        10,
        "expected ',' or ']', but got '}'; the '[' opened on this line meets a '}' before "
        "its ']'; close it with ']' before the '}'",
    ),
    "unclosed_brace_at_the_end.yaml": (
        "fields:\n  EmailAddress: $.email\n  Phone: {path: $.phone, transform: phone\n",
        11,
        "expected ',' or '}', but got '<stream end>'; the '{' opened on this line is never "
        "closed (the file ends inside it); close it with '}' after its last item",
    ),
    "unclosed_brace_then_a_key.yaml": (
        "fields:\n  Phone: {path: $.phone, transform: [phone]\n  EmailAddress: $.email\n",
        10,
        "the '{' opened on this line is never closed (YAML read on to line 11 as inside it)",
    ),
    "unclosed_bracket_then_a_document.yaml": (
        "fields:\n  EmailAddress: $.email\nskip_if: [$.test\n---\n"
        "kind: endpoint\nname: other\nsource: none\n",
        11,
        "the '[' opened on this line is never closed (its document ends at line 12 inside it)",
    ),
    # A ' #' with text after it inside a bracket ("Ad #5", "Form #2"): YAML reads a comment
    # from it, and the bracket's close with it; it was told as a bracket never closed (close
    # it with '}'), on a line that visibly closes it. A comment written '# ...' after a
    # bracket truly never closed is still told as that.
    "hash_in_a_flow_value.yaml": (
        "fields:\n  EmailAddress: $.email\n  Source: {value: Ad #5}\n  Phone: $.phone\n",
        11,
        "expected ',' or '}', but got '<scalar>'; ' #' starts a comment in YAML, so the rest "
        "of this line was not read, its '}' too; put the value holding '#' in quotes: \"Ad #5\"",
    ),
    "hash_in_a_match_value.yaml": (
        "match: {$.form: Form #2, $.site: main}\nfields:\n  EmailAddress: $.email\n",
        9,
        "its '}' too; put the value holding '#' in quotes: \"Form #2\"",
    ),
    "hash_in_a_transform_list_at_the_end.yaml": (
        "fields:\n  mx_Tags:\n    path: $.tags\n    transform: [trim, join( #)]\n",
        12,
        "its ']' too; put the value holding '#' in quotes: \"join( #)\"",
    ),
    "comment_after_a_bracket_never_closed.yaml": (
        "fields:\n  Phone: {path: $.phone  # was [x], {y}\n  EmailAddress: $.email\n",
        10,
        "the '{' opened on this line is never closed (YAML read on to line 11 as inside it)",
    ),
    # A quoted path holding its own kind of quote (a filter's): the value ends there, and
    # the rest of the path is read as YAML; the hint was to check the indentation.
    "single_quotes_inside_single_quotes.yaml": (
        "fields:\n  EmailAddress: '$.answers[?(@.field.ref=='email')].email'\n",
        10,
        "expected <block end>, but found '<scalar>'; the value in '...' ends at the ' after "
        "'$.answers[?(@.field.ref==', so what follows it was read as YAML: write the quotes "
        'inside it with the other kind, "',
    ),
    "double_quotes_inside_double_quotes_in_braces.yaml": (
        'fields:\n  EmailAddress: { path: "$.answers[?(@.field.ref=="email")].email" }\n',
        10,
        'the value in "..." ends at the " after \'$.answers[?(@.field.ref==\', so what '
        "follows it was read as YAML: write the quotes inside it with the other kind, '",
    ),
    # A bracket left empty (or after a ',') when the file or document ends: pyyaml marks the
    # file's end, not the bracket; the error is at the bracket's line.
    "empty_bracket_at_the_end.yaml": (
        "fields:\n  EmailAddress: $.email\nbogus: [\n\n",
        11,
        "expected the node content, but found '<stream end>'; the '[' opened on this line is "
        "never closed (the file ends inside it); close it with ']' after its last item",
    ),
    "brace_after_a_comma_at_the_end.yaml": (
        "fields:\n  EmailAddress: $.email\n  Phone: {path: $.phone,\n# done\n",
        11,
        "the '{' opened on this line is never closed (the file ends inside it)",
    ),
    "empty_bracket_then_a_document.yaml": (
        "fields:\n  EmailAddress: $.email\nskip_if: [\n---\n"
        "kind: endpoint\nname: other\nsource: none\n",
        11,
        "the '[' opened on this line is never closed (its document ends inside it)",
    ),
    "unclosed_bracket_then_a_deeper_key.yaml": (
        "fields:\n  EmailAddress: $.email\nskip_if: [$.test\n  $.demo: yes\n",
        11,
        "the '[' opened on this line is never closed (YAML read on to line 12 as inside it)",
    ),
    # A ',' missing between two items of a bracket that goes on over lines (closed): not a
    # bracket never closed (following that fix made it worse); the line after the missing
    # ',' is where YAML stops, and the fix names the line to end with one.
    "comma_missing_in_a_map_over_lines.yaml": (
        'fields:\n  Source:\n    path: $.src\n    transform: {map: {fb: "Facebook",\n'
        '                      gg: "Google"\n                      tt: "TikTok"}}\n',
        14,
        "expected ',' or '}', but got '<scalar>'; the '{' opened on line 12 goes on, and this "
        "line's item follows the one before it with no ',' between them: end line 13 with ','",
    ),
    "comma_missing_in_a_list_over_lines.yaml": (
        "fields:\n  Source:\n    path: $.src\n    transform: [trim,\n      lower\n"
        "      map: {a: b}]\n",
        14,
        "the '[' opened on line 12 goes on, and this line's item follows the one before it "
        "with no ',' between them: end line 13 with ','",
    ),
    # A ${VAR} not in quotes on a line of its own in a '[' over several lines, every ','
    # there: its { opens a mapping. It was told to end the line above (the '[') with ','.
    "unquoted_variable_on_its_own_line_in_a_list.yaml": (
        "fields:\n  EmailAddress: $.email\n  Source:\n    path: [\n      ${SRC_PATH},\n"
        "      $.src\n    ]\n",
        13,
        "expected ',' or ']', but got '{'; inside { } or [ ], put a ${VAR} in quotes",
    ),
    # A JSONPath holding [ ] or * written unquoted inside { } or [ ]: YAML reads its [ as a
    # list and its * as an alias. The hint said to quote values that start with '[', which
    # a path does not; it names quoting the path now.
    "unquoted_index_in_braces.yaml": (
        "fields:\n  EmailAddress: $.email\n  Phone: { path: $.answers[0].phone, transform: phone }"
        "\n",
        11,
        "expected ',' or '}', but got '['; inside { } or [ ], a JSONPath holding [ ] or * "
        'must be in quotes, like { path: "$.answers[0].email" }',
    ),
    "unquoted_filter_in_a_list_of_paths.yaml": (
        "fields:\n  EmailAddress: { path: [$.lead.email, $.answers[?(@.ref=='email')].email] }\n",
        10,
        "expected ',' or ']', but got '['; inside { } or [ ], a JSONPath holding [ ] or * "
        "must be in quotes",
    ),
    "unquoted_wildcard_in_a_match_key.yaml": (
        "match: { $.tags[*]: vip }\nfields:\n  EmailAddress: $.email\n",
        9,
        "expected alphabetic or numeric character, but found ']'; inside { } or [ ], a "
        "JSONPath holding [ ] or * must be in quotes",
    ),
    # map({a: b}) unquoted: YAML reads its { as a mapping inside { } or [ ] and its ': ' as a
    # key's in a block. The hint blamed a JSONPath (in quotes or none there), or said only to
    # quote values that hold ': '; it names quoting the transform, or writing it in YAML.
    "unquoted_map_in_braces.yaml": (
        'fields:\n  EmailAddress: $.email\n  mx_Plan: { path: "$.plan", transform: map({a: b}) }\n',
        11,
        "expected ',' or '}', but got '{'; a map({...}) transform must be in quotes, since "
        "YAML reads its { } and ': ' as its own: transform: \"map({a: Alpha, b: Beta})\"; or "
        "write it in YAML, transform: {map: {a: Alpha, b: Beta}} (in a list: [trim, {map: "
        "{a: b}}])",
    ),
    "unquoted_map_in_a_block.yaml": (
        "fields:\n  EmailAddress: $.email\n  mx_Plan:\n    path: $.plan\n"
        "    transform: map({a: Alpha, b: Beta})\n",
        13,
        "mapping values are not allowed here; a map({...}) transform must be in quotes",
    ),
    # Right as they were: a list item at column 0 is where YAML stops; a top-level key is
    # where it belongs, and the key after it, indented, is the one to fix; so is an
    # attribute in 'fields', and the key after it.
    "item_at_column_0.yaml": (
        "fields:\n  mx_Tags:\n    path:\n      - $.a\n- $.b\n      - $.c\n",
        13,
        "this list item starts at column 0 (it lost its indentation)",
    ),
    "top_level_key_then_one_too_deep.yaml": (
        "fields:\n  EmailAddress: $.email\ntarget: default\n  search_by: EmailAddress\n",
        12,
        "mapping values are not allowed here; check the indentation",
    ),
    "attribute_then_one_too_deep.yaml": (
        "fields:\n  EmailAddress:\n    path: $.email\n  Phone: $.phone\n    transform: phone\n",
        13,
        "mapping values are not allowed here; check the indentation",
    ),
}


def test_a_syntax_error_is_at_the_line_to_fix(tmp_path: Path) -> None:
    """`leadhub check` puts a YAML syntax error at the line a user must fix. A key that lost
    its indentation (at column 0 in the middle of a mapping's fields, or one level short
    among a field's keys) was reported at the line after it, which is right as written; so
    was a key without its ':' (pyyaml notices it on the next line), and a quote or a '[' or
    '{' never closed was reported at the file's end (or the next document or key). A ','
    missing between the items of a bracket over several lines is not a bracket never closed."""
    for name, (text, _, _) in MISPLACED.items():
        (tmp_path / name).write_text(ENDPOINT + MAPPING.replace("name: m", f"name: {name}") + text)
    done = leadhub_run(["check", str(tmp_path)])
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stdout.splitlines() if "YAML syntax error" in line]
    assert len(errors) == len(MISPLACED), done.stdout
    for name, (_, line, says) in MISPLACED.items():
        (error,) = [e for e in errors if e.startswith(f"{tmp_path / name}:")]
        assert error.startswith(f"{tmp_path / name}:{line}: YAML syntax error: "), error
        assert says in error, error


def test_a_comma_missing_between_unquoted_items_of_a_list_over_lines_is_an_error(
    tmp_path: Path,
) -> None:
    """Items of a '[' written one a line, unquoted, with a ',' missing between two: YAML
    joins their lines into one item, so there is no syntax error. ``properties: [email``
    then ``firstname]`` loaded silently as the one property 'email firstname' (the contact's
    email never read, each lead dead), and a path or transform list was told its joined
    item was no JSONPath, or several transforms in one text "to write as a list", which it
    was. Each is an error at the item after the missing ',', naming the line to end with
    one, and nothing else is said of the joined item."""
    text = (
        "kind: endpoint\nname: crm\nsource: hubspot\nclient_secret: s\n"
        "webhook_url: https://hub.example.com/hooks/crm\naccess_token: t\n"
        "properties: [\n  email\n  firstname\n]\n"  # lines 7-10
        "---\nkind: mapping\nname: m\nendpoint: crm\nfields:\n"  # lines 11-15
        "  EmailAddress: { path: $.properties.email, transform: [\n    trim\n    lower\n  ] }\n"
        "  FirstName: { path: [\n    $.properties.firstname\n\n    $.first\n  ] }\n"
    )
    issues = [str(issue) for issue in _problems(tmp_path, text).issues]
    site = tmp_path / "site.yaml"
    assert issues == [
        f"{site}:{line}: the '[' opened on line {opened} goes on, and this line's item "
        f"follows the one before it with no ',' between them, so YAML read them as one item, "
        f"{joined!r}: end line {end} with ',' (or, if it is one value over several lines, "
        "put it in quotes)"
        for line, opened, joined, end in [
            (9, 7, "email firstname", 8),
            (18, 16, "trim lower", 17),
            (23, 20, "$.properties.firstname\n$.first", 21),
        ]
    ]
    fixed = text.replace("  email\n", "  email,\n").replace("trim\n", "trim,\n")
    fixed = fixed.replace("firstname\n\n", "firstname,\n\n")
    (tmp_path / "site.yaml").write_text(fixed, encoding="utf-8")
    config = load(tmp_path, {})
    options = config.endpoints["crm"].options
    assert isinstance(options, HubSpotOptions)
    assert options.properties == ("email", "firstname")


def test_an_endpoint_without_a_mapping_is_still_warned_about(tmp_path: Path) -> None:
    """When every file was read whole, an endpoint no mapping takes is still a warning."""
    (tmp_path / "a.yaml").write_text(ENDPOINT, encoding="utf-8")
    config = load(tmp_path, {})
    assert any("endpoint 'site' has no mapping" in w for w in config.warnings)


#: Transforms written the way YAML or a hurried hand breaks them: (the field's lines, the
#: line of the error, what it says there). Each said "malformed" or "did you mean 'lower'?",
#: which named no fix.
BROKEN_TRANSFORMS = {
    "join-with-a-comma-in-braces": (
        '  mx_Tags: { path: "$.tags[*]", transform: join(, ) }\n',
        11,
        "field 'mx_Tags' of mapping 'm': transform 'join(' is malformed: its '(' is never "
        "closed; inside { } or [ ] a ',' ends a value, so quote a transform holding one, "
        'like "join(, )"',
    ),
    "join-with-a-comma-in-a-list": (
        "  mx_Tags:\n    path: $.tags[*]\n    transform: [trim, join(, )]\n",
        13,
        "field 'mx_Tags' of mapping 'm': transform 'join(' is malformed: its '(' is never closed",
    ),
    "two-names-with-a-comma": (
        "  mx_City: {path: $.city, transform: 'trim, title'}\n",
        11,
        "field 'mx_City' of mapping 'm': transform 'trim, title' names several transforms in "
        "one text; write them as a list, like [trim, title]",
    ),
    "three-names-with-spaces": (
        "  mx_City:\n    path: $.city\n    transform: trim lower title\n",
        13,
        "field 'mx_City' of mapping 'm': transform 'trim lower title' names several "
        "transforms in one text; write them as a list, like [trim, lower, title]",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN_TRANSFORMS))
def test_a_broken_transform_names_the_fix(tmp_path: Path, name: str) -> None:
    lines, line, says = BROKEN_TRANSFORMS[name]
    text = ENDPOINT + MAPPING + "fields:\n  EmailAddress: $.email\n" + lines
    error = _problems(tmp_path, text)
    mine = [i for i in error.issues if "transform '" in i]
    assert len(mine) == 1, error.issues
    assert mine[0].startswith(f"{tmp_path / 'site.yaml'}:{line}: {says}"), mine[0]


def test_transforms_written_as_the_fixes_say_load(tmp_path: Path) -> None:
    """What the errors above say to write is taken, and joins and titles as meant."""
    text = (
        ENDPOINT
        + MAPPING
        + "fields:\n  EmailAddress: $.email\n"
        + '  mx_Tags: { path: "$.tags[*]", transform: "join(, )" }\n'
        + "  mx_City: {path: $.city, transform: [trim, lower, title]}\n"
    )
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    mapping = load(tmp_path, {}).mappings["m"]
    result = map_document([mapping], {"email": "a@b.c", "tags": ["x", "y"], "city": " pUNE "})
    assert isinstance(result, CaptureRequest), result
    assert result.body[1:] == [
        {"Attribute": "mx_Tags", "Value": "x, y"},
        {"Attribute": "mx_City", "Value": "Pune"},
    ]


@pytest.mark.parametrize(
    ("before", "document", "line", "says"),
    [
        (
            "",
            "name: site\nsource: token\ntoken: t\nheader: X-Site-Token\n",
            1,
            "but its 'source' is an endpoint's; write kind: endpoint as its first line",
        ),
        (
            ENDPOINT,
            "name: default\nurl: https://api-in21.leadsquared.com\naccess_key: k\nsecret_key: s\n",
            6,
            "but its 'url' is a target's; write kind: target as its first line",
        ),
    ],
    ids=["endpoint", "target"],
)
def test_an_endpoint_or_target_without_its_kind_line_is_one_error_naming_it(
    tmp_path: Path, before: str, document: str, line: int, says: str
) -> None:
    """A document without ``kind`` is a mapping: an endpoint or a target whose ``kind:`` line
    was left out gave an "unknown key" error for each of its keys, "needs 'endpoint'",
    "needs 'fields'", and "not defined" for each mapping of the endpoint, none naming the
    line to add. It is one error at the document's first line now, and the line it names
    is the fix."""
    mapping = "---\nkind: mapping\nname: m\nendpoint: site\nfields:\n  EmailAddress: $.email\n"
    error = _problems(tmp_path, before + document + mapping)
    assert error.issues == [
        f"{tmp_path / 'site.yaml'}:{line}: this document has no 'kind', so it is read as a "
        f"mapping, {says}"
    ]
    kind = says.split("write ")[1].split(" as its")[0]
    (tmp_path / "site.yaml").write_text(before + kind + "\n" + document + mapping)
    config = load(tmp_path, {})
    assert "m" in config.mappings and "site" in config.endpoints


#: A LeadSquared target as a user adds one, its name on line 2, named by the test.
TARGET = (
    "kind: target\nname: {name}\nurl: https://api-in21.leadsquared.com\n"
    "access_key: ${{LSQ_ACCESS_KEY}}\nsecret_key: ${{LSQ_SECRET_KEY}}\n---\n"
)
LSQ_KEYS = {"LSQ_ACCESS_KEY": "ak", "LSQ_SECRET_KEY": "sk"}


@pytest.mark.parametrize(
    ("name", "case"), [("production", ""), ("Default", " (target names are case-sensitive)")]
)
def test_a_target_not_named_default_that_no_mapping_names_is_warned_of(
    tmp_path: Path, name: str, case: str
) -> None:
    """ "Pointing it at LeadSquared": a target named otherwise than ``default`` (``production``,
    or ``Default``) while the mappings name no target. They send to ``default``, the embedded
    sandbox since no target has that name: every lead was captured there and listed
    ``delivered``, none reached the account, and ``check`` said nothing. It warns at the
    target's name, saying where the leads go and both fixes."""
    text = TARGET.format(name=name) + ENDPOINT + MAPPING + "fields:\n  EmailAddress: $.email\n"
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    done = leadhub_run(["check", str(tmp_path)], env=LSQ_KEYS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (
        f"warning: {tmp_path / 'site.yaml'}:2: target {name!r} is used by no mapping, so no "
        "lead is sent to it; a mapping that names no target sends to 'default', which is the "
        f"embedded sandbox since no target is named default{case}, so its leads never reach "
        f"LeadSquared. Name this target default, or write target: {name} in the mappings "
        "that should use it"
    )


def test_a_target_a_mapping_names_is_not_warned_of(tmp_path: Path) -> None:
    """The target a mapping names, even one left unusable by its errors (whose error says
    what to fix), and ``default`` are not warned of; a spare target beside a real
    ``default`` is, without the sandbox's words."""
    text = (
        TARGET.format(name="default")
        + TARGET.format(name="india")
        + TARGET.format(name="us")
        + TARGET.format(name="spare")
        + ENDPOINT
        + MAPPING
        + "target: india\nmatch: {$.region: in}\nfields:\n  EmailAddress: $.email\n---\n"
        + "name: broken\nendpoint: site\ntarget: us\n"
        + 'match:\n  "$.region[": us\nfields:\n  EmailAddress: $.email\n'
    )
    error = _problems_with(tmp_path, text, LSQ_KEYS)
    broken = [issue for issue in error.issues if "'$.region[' does not compile" in issue]
    assert broken, error.issues
    assert [w for w in error.warnings if "used by no mapping" in w] == [
        f"{tmp_path / 'site.yaml'}:20: target 'spare' is used by no mapping, so no lead is "
        "sent to it; write target: spare in the mappings that should use it"
    ]


@pytest.mark.parametrize("match", ["", 'match:\n  "$.region[": us\n'], ids=["usable", "unusable"])
def test_an_unknown_mapping_target_brings_no_unused_target_warning(
    tmp_path: Path, match: str
) -> None:
    """A mapping whose target is an unset ``${VAR}`` may name any target, whether the
    mapping is usable or left unusable by another error: none is warned of as unused on
    that guess (the unset variable is the error to fix)."""
    text = (
        TARGET.format(name="production")
        + ENDPOINT
        + MAPPING
        + "target: ${TARGET_NAME}\n"
        + match
        + "fields:\n  EmailAddress: $.email\n"
    )
    error = _problems_with(tmp_path, text, LSQ_KEYS)
    assert [issue for issue in error.issues if "TARGET_NAME" in issue], error.issues
    assert [w for w in error.warnings if "used by no mapping" in w] == []


def _problems_with(tmp_path: Path, text: str, environ: dict[str, str]) -> ConfigError:
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, environ)
    return caught.value


def test_a_colon_without_its_space_says_so_at_its_line(tmp_path: Path) -> None:
    """``{path:$.email}`` and ``match: {$.form_id:abc}``: YAML parts a key from its value
    only at a ':' followed by a space, so each is one key given no value. What followed
    named the key's symptom (an unknown key 'path:$.email', a JSONPath that does not compile)
    and not the cause; now an error at its line says it first. A key in quotes holding a
    ':', or one given a value, is no such error."""
    text = (
        "match: {$.form_id:abc}\n"  # line 9
        "fields:\n"
        "  EmailAddress: {path:$.email, required: true}\n"  # line 11
        '  mx_Slot: {path: $.slot, transform: {map: {"10:30": Morning, a: "b:c"}}}\n'
        "  mx_Link: {value: 'https://example.com/a:b'}\n"
    )
    error = _problems(tmp_path, ENDPOINT + MAPPING + text)
    said = [i for i in error.issues if "is read as a key given no value" in i]
    assert said == [
        f"{tmp_path / 'site.yaml'}:9: '$.form_id:abc' is read as a key given no value: YAML "
        "parts a key from its value at a ':' followed by a space; write $.form_id: abc (or "
        "the key in quotes, if its ':' is meant)",
        f"{tmp_path / 'site.yaml'}:11: 'path:$.email' is read as a key given no value: YAML "
        "parts a key from its value at a ':' followed by a space; write path: $.email (or the "
        "key in quotes, if its ':' is meant)",
    ]
    assert error.issues[0] == said[0] and error.issues[-1].startswith(f"{tmp_path}/site.yaml:11")


def test_a_value_a_comment_cut_short_is_warned_of_at_its_line(tmp_path: Path) -> None:
    """``value: Ad #5`` is the value ``Ad`` and ``$.form: Form #2`` matches ``Form``: YAML
    reads `` #`` as a comment's start, so each was sent or compared without its end, without
    a word. A '#' with text glued to it is warned of at its line, with the value in quotes;
    a comment written ``# ...``, and one after a closing bracket, are not."""
    text = (
        "match:\n  $.form: Form #2\n"  # line 10
        "fields:\n  EmailAddress: $.email   # the email, trimmed\n"
        "  Source:\n    value: Ad #5\n"  # line 14
        "  mx_B: {path: $.b}  #x\n"
    )
    (tmp_path / "site.yaml").write_text(ENDPOINT + MAPPING + text, encoding="utf-8")
    warnings = [w for w in load(tmp_path, {}).warnings if "as a comment" in w]
    assert warnings == [
        f"{tmp_path / 'site.yaml'}:{line}: the value here is {value!r}: YAML reads ' #' and "
        "what follows on the line as a comment; if that belongs to the value, put it in "
        f'quotes: "{meant}"'
        for line, value, meant in ((10, "Form", "Form #2"), (14, "Ad", "Ad #5"))
    ]
