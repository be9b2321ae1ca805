"""Files that are wrong in YAML's own terms: bad tags, alias loops, deep nesting, alias bombs.

Each is a ``file:line: message`` with the fix and exit 1 from ``leadhub check``, never a
traceback, and a bomb is refused quickly instead of being expanded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub.config import ConfigError, load
from tests.support.server import leadhub_run

HEAD = "kind: endpoint\nname: x\nsource: none\n"


def _bomb(levels: int) -> str:
    lines = ["l0: &l0 [" + ",".join("a" * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return HEAD + "\n".join(lines) + "\n"


def _merge_bomb(levels: int) -> str:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: v}}" for i in range(1, levels + 1)]
    return HEAD + "\n".join(lines) + "\n"


# (id, file text, line of the error, what the message says)
HOSTILE = [
    (
        "int-tag",
        "kind: endpoint\nname: !!int abc\nsource: none\n",
        2,
        "'abc' is not a whole number",
    ),
    ("bool-tag", HEAD + "max_body: !!bool maybe\n", 4, "'maybe' is not true or false"),
    ("float-tag", HEAD + "max_body: !!float big\n", 4, "'big' is not a number"),
    ("null-tag", HEAD + "dedupe: !!null $.id\n", 4, "'$.id' is not null"),
    ("python-tag", "kind: endpoint\nname: x\nsource: !!python/name:os.system none\n", 3, "tag"),
    ("custom-tag", "kind: endpoint\nname: x\nsource: !env none\n", 3, "tag '!env'"),
    ("set-tag", HEAD + "dedupe: !!set {a, b}\n", 4, "tag '!!set'"),
    ("recursive-list", HEAD + "dedupe: &a [*a]\n", 4, "alias *a is inside the value"),
    ("recursive-map", HEAD + "dedupe: &a {k: *a}\n", 4, "alias *a is inside the value"),
    ("recursive-merge", HEAD + "dedupe: &a {<<: *a}\n", 4, "alias *a is inside the value"),
    ("deep-list", HEAD + "dedupe: " + "[" * 500 + "]" * 500 + "\n", 4, "more than 100 levels"),
    (
        "deep-map",
        HEAD + "".join(f"{'  ' * i}k{i}:\n" for i in range(150)),
        4 + 100,
        "more than 100 levels",
    ),
    (
        "deep-through-aliases",
        HEAD + "a: &a " + "[" * 90 + "]" * 90 + "\nb: &b " + "[" * 20 + "*a" + "]" * 20 + "\n",
        5,
        "more than 100 levels",
    ),
    # l1..l3 stand for 12,330 values; l4's aliases add 11,111 each, the 8th passes 100,000
    ("bomb", _bomb(6), 8, "aliases in this file stand for more than 100000 values"),
    ("bomb-9", _bomb(9), 8, "aliases in this file stand for more than 100000 values"),
    # m_i stands for 5 + 2 * m_(i-1) values; m1..m12's aliases add 81,780, m13's first 40,955
    ("merge-bomb", _merge_bomb(30), 4 + 13, "aliases in this file stand for more than 100000"),
    ("bad-merge", HEAD + "<<: 5\n", 4, "'<<' merges a mapping"),
    # PyYAML's reader refuses control characters with an offset, not a line: the line is
    # counted from it (it used to be line 1 with "<unicode string>", position 44)
    (
        "control-character",
        HEAD + "dedupe: $.id\nmax_body: 1MiB\nsplit: '$.a\x01'\n",
        6,
        "the file holds the character U+0001, which YAML does not allow",
    ),
    ("nul-byte", HEAD + "\n\nx: \x00\n", 6, "U+0000"),
    # A line break only YAML sees (U+2028, U+2029, NEL; pasted from a web page): in a comment
    # it ended the comment and the rest was read as YAML, an error at the line after (as
    # YAML counts lines, one more than the editor); now an error at the editor's line.
    (
        "line-separator-in-a-comment",
        HEAD + "dedupe: $.id  # from the docs \u2028 page\n---\nname: m\nendpoint: x\n",
        4,
        "the line holds the character U+2028, which YAML reads as a line break though an "
        "editor shows none (often pasted from a web page or a word processor); remove it, or "
        "write it as \\u2028 inside double quotes if it is meant",
    ),
    (
        "paragraph-separator-in-a-value",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  Source: {value: 'Spring\u2029Sale'}\n",
        8,
        "the line holds the character U+2029, which YAML reads as a line break",
    ),
    ("next-line-in-a-path", HEAD + "\ndedupe: $.id\x85\n", 5, "the character U+0085"),
    # A no-break space where YAML needs a space: in the indentation it made the key text
    # ("unknown key '\xa0 Phone'"); after a key's ':' it made the line one plain text, and
    # the error came a line late ("mapping values are not allowed here").
    (
        "no-break-space-indenting-a-field",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  EmailAddress: $.e\n\u00a0 Phone: $.p\n",
        9,
        "the line holds the character U+00A0, a no-break space (often pasted from a web "
        "page), where YAML needs a plain space; replace it with a space",
    ),
    (
        "no-break-space-after-a-colon",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  EmailAddress:\u00a0$.e\n  Phone: $.p\n",
        8,
        "the character U+00A0, a no-break space",
    ),
    (
        "no-break-space-after-a-dash",
        HEAD + "dedupe:\n  - $.a\n  -\u00a0$.b\n",
        6,
        "the character U+00A0, a no-break space",
    ),
    # A zero-width space in a key or a path: a name that never matches, or a path error
    # naming a character nobody can see.
    (
        "zero-width-space-in-a-path",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  Phone: $.pho\u200bne\n",
        8,
        "the line holds the character U+200B, which an editor does not show (often pasted "
        "from a web page or a word processor); remove it, or write it as \\u200b inside "
        "double quotes if it is meant",
    ),
    ("byte-order-mark-mid-file", HEAD + "\ufeffdedupe: $.id\n", 4, "the character U+FEFF"),
    # In a key, in a path inside brackets, ending a name, after a ':' in braces, in the
    # indentation after a block scalar ends: where YAML reads structure, still refused
    # (outside comments, quotes and block scalars only).
    (
        "zero-width-joiner-in-a-key",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  mx_Lead\u200d_Score: $.s\n",
        8,
        "the line holds the character U+200D, which an editor does not show",
    ),
    (
        "zero-width-non-joiner-in-a-path-with-brackets",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  Phone:\n    path: $.a[0].pho\u200cne\n",
        9,
        "the character U+200C",
    ),
    (
        "zero-width-ending-a-name",
        HEAD + "# it's 'quoted'\n---\nname: m\nendpoint: x\u2060\nfields: {Phone: $.p}\n",
        7,
        "the character U+2060",
    ),
    (
        "no-break-space-after-a-colon-in-braces",
        HEAD
        + "---\nname: m\nendpoint: x\nfields:\n  mx_A: {value: rock 'n roll, path:\u00a0$.p}\n",
        8,
        "the character U+00A0, a no-break space",
    ),
    (
        "no-break-space-indenting-after-a-block-scalar",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  mx_A:\n    value: |\n      a\n"
        "\u00a0 Phone: $.p\n",
        11,
        "the character U+00A0, a no-break space",
    ),
    (
        "no-break-space-after-a-dash-after-a-block-scalar",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  mx_A:\n    value: |\n      a\n"
        "  Phone:\n    path: $.p\n    transform:\n      -\u00a0trim\n",
        14,
        "the character U+00A0, a no-break space",
    ),
    # An alias of an anchor written in another document (each --- starts anew): the hint
    # said to check the indentation and quote values.
    (
        "alias-of-another-documents-anchor",
        HEAD + "dedupe: &id $.id\n---\nname: m\nendpoint: x\nfields:\n  mx_Id: *id\n",
        9,
        "found undefined alias 'id'; *id names no anchor &id written above it in this "
        "document: an anchor is known only in its own document (between ---) and below it",
    ),
    # a tab in the indentation: the fix is to use spaces (not to quote a value)
    (
        "tab-indent",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n\tEmailAddress: $.e\n",
        8,
        "YAML indents with spaces only: replace the tabs with spaces",
    ),
    # ${VAR} unquoted in a flow mapping: its { opens a mapping
    (
        "variable-in-flow",
        HEAD + "---\nname: m\nendpoint: x\nfields:\n  Source: { value: ${SRC} }\n",
        8,
        'inside { } or [ ], put a ${VAR} in quotes, like { value: "${VAR}" }',
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_files_are_config_errors(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """load reports the problem at its line (a ConfigError, no other exception), quickly."""
    (tmp_path / "a.yaml").write_text(text)
    # The CPU time of this thread, which does the work: neither a loaded machine's waits
    # for a core nor the process's other threads (servers of other tests) count.
    started = time.thread_time()
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert time.thread_time() - started < 5
    at_line = [i for i in info.value.issues if i.startswith(f"{tmp_path}/a.yaml:{line}: ")]
    assert any(message in issue for issue in at_line), "\n".join(info.value.issues)


def test_a_no_break_space_inside_a_value_and_a_leading_byte_order_mark_are_kept(
    tmp_path: Path,
) -> None:
    """Only where YAML needs a space is a no-break space refused: in a value (French
    typography writes one before a colon) it is text; a byte order mark starting the file
    is the file's encoding mark, dropped."""
    (tmp_path / "a.yaml").write_text(
        "\ufeff" + HEAD + "---\nname: m\nendpoint: x\n"
        'fields:\n  mx_Note: {value: "Prix\u00a0: 10\u00a0€"}\n'
        "  mx_Plan: {value: Offre\u00a0spéciale}\n"
    )
    fields = load(tmp_path, {}).mappings["m"].fields
    assert [spec.value for spec in fields] == ["Prix\u00a0: 10\u00a0€", "Offre\u00a0spéciale"]


def test_invisible_characters_in_comments_quotes_block_scalars_and_words_are_kept(
    tmp_path: Path,
) -> None:
    """A zero-width or no-break space is refused only where YAML reads structure: in a
    comment (an emoji's ZWJ, a French no-break space), a quoted value (Persian's ZWNJ, a
    Devanagari conjunct's ZWJ in a match), a block scalar's line, or inside a word of a plain
    value, it is text the user means, and the file loads as it did before that check."""
    (tmp_path / "a.yaml").write_text(
        HEAD + "# team \U0001f468\u200d\U0001f469\u200d\U0001f467\n"
        "# Note:\u00a0this\n---\nname: m\nendpoint: x\n"
        'match: {$.city: "\u0915\u094d\u200d\u0937"}\n'
        "fields:\n"
        '  mx_City: {value: "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"}\n'
        '  mx_Note: {value: "Note:\u00a0x"}\n'
        "  mx_Text:\n    value: |\n      line\n      \u00a0indented\n"
        "  mx_Word: {value: \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645}\n"
        "  mx_Ratio:\n    value: Ratio:\u00a0x\n"
    )
    mapping = load(tmp_path, {}).mappings["m"]
    ((condition,),) = mapping.match
    assert condition.expected == {"\u0915\u094d\u200d\u0937"}
    assert [spec.value for spec in mapping.fields] == [
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "Note:\u00a0x",
        "line\n\u00a0indented\n",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "Ratio:\u00a0x",
    ]


def test_check_takes_a_file_with_invisible_characters_where_yaml_reads_text(
    tmp_path: Path,
) -> None:
    """`leadhub check` on such a file: exit 0, no error about the characters."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: x\nsource: none  # team \U0001f468\u200d\U0001f469\n"
        "---\nname: m\nendpoint: x\n"
        'fields:\n  EmailAddress: $.e\n  mx_Note: {value: "Prix\u00a0:\u200b10"}\n'
    )
    done = leadhub_run(["check", str(tmp_path)], timeout=30, leadhub_env=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "U+" not in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "int-tag",
        "bool-tag",
        "float-tag",
        "recursive-list",
        "deep-list",
        "bomb",
        "control-character",
        "tab-indent",
        "zero-width-joiner-in-a-key",
    ],
)
def test_check_reports_hostile_files_without_a_traceback(tmp_path: Path, case: str) -> None:
    """`leadhub check` on each file the audit crashed or stalled: exit 1, file:line: message."""
    _, text, line, message = next(h for h in HOSTILE if h[0] == case)
    (tmp_path / "a.yaml").write_text(text)
    done = leadhub_run(["check", str(tmp_path)], timeout=30, leadhub_env=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{tmp_path}/a.yaml:{line}: " in done.stdout
    assert message in done.stdout


def test_aliases_and_merges_still_work(tmp_path: Path) -> None:
    """An anchor used a few times and a `<<` merge are fine: keys written beside a merge
    win over merged ones, and the first of several merged mappings wins."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\nname: m\nendpoint: e\n"
        "match:\n  - &base {$.form: a, $.lang: en}\n  - {<<: *base, $.lang: fr}\n"
        "  - {<<: [{$.form: b}, *base]}\n"
        "fields:\n  EmailAddress: &email {path: $.email, required: true}\n"
        "  mx_Other: *email\n"
    )
    mapping = load(tmp_path, {}).mappings["m"]
    rules = [{c.path.text: set(c.expected) for c in rule} for rule in mapping.match]
    assert rules == [
        {"$.form": {"a"}, "$.lang": {"en"}},
        {"$.form": {"a"}, "$.lang": {"fr"}},
        {"$.form": {"b"}, "$.lang": {"en"}},
    ]
    assert [(f.attribute, f.required) for f in mapping.fields] == [
        ("EmailAddress", True),
        ("mx_Other", True),
    ]


def test_a_document_after_a_bad_value_is_still_read(tmp_path: Path) -> None:
    """A bad tag is one error at its line; the rest of the file is still checked."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: x\nsource: none\nmax_body: !!int big\n---\n"
        "kind: endpoint\nname: y\nsource: nonee\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    issues = [i.removeprefix(f"{tmp_path}/") for i in info.value.issues]
    assert len(issues) == 2, issues
    assert issues[0].startswith("a.yaml:4: 'big' is not a whole number")
    assert issues[1].startswith("a.yaml:8: 'source' of endpoint 'y' is 'nonee'")
