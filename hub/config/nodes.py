"""YAML documents as trees of located values, with ``${VAR}`` expanded.

Files are composed (not loaded) with a safe loader so every key and value keeps
its line. Values compare and are sent as text (``mappings/README.md``), so a plain
scalar is read as more than text only when YAML 1.2's core schema says so and the
text is what JSON would read the same way:

- ``true`` / ``false`` (``True``, ``TRUE``...) are booleans; ``yes``, ``NO``, ``on`` stay text;
- ``null`` (``Null``, ``NULL``), ``~`` and nothing at all are null;
- decimal integers without leading zeros (``0``, ``42``, ``-7``, ``+3``) are integers;
- decimal numbers with a fraction or an exponent (``1.5``, ``.5``, ``1e3``) and
  ``.inf``, ``-.inf``, ``.nan`` are floats;
- everything else is the text written: ``01234`` and ``007`` (a zip code, an id),
  ``0x1F``, ``0o17`` (YAML 1.2 may read these as integers; as text they compare the
  way they are written), ``1_000``, ``1:30`` and dates.

A scalar with ``${VAR}`` / ``${VAR:default}`` in it is the expanded text, exactly: it is
never read again as YAML (``ZIP=01234`` gives ``01234``, ``FLAG=true`` gives ``true``), and
the fields that need a number, a duration or a flag parse that text. ``$${`` writes a
literal ``${``.

Explicit tags are the ones above (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
and ``!!timestamp``/``!!binary``, kept as text); a value that does not fit its tag, or
any other tag, is an error at its line. Anchors, aliases and ``<<`` merges work, within
bounds that keep a hostile file from exhausting the loader: values nest at most
:data:`MAX_DEPTH` levels (aliases included), an alias is never inside the value it names,
and the aliases of one file stand for at most :data:`MAX_ALIASED` values in all (an
"alias bomb" multiplies a list tenfold per line).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from hub.config.issues import Issues

MAX_DEPTH = 100  # levels of lists and mappings in one value; configuration needs a handful
MAX_ALIASED = 100_000  # values repeated through aliases in one file

_PREFIX = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_PREFIX + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = _PREFIX + "seq", _PREFIX + "map", _PREFIX + "merge"
#: Tags whose values are kept as the text written.
_TEXT_TAGS = (_STR, _PREFIX + "timestamp", _PREFIX + "binary")

_BOOL_TEXT = re.compile(r"true|True|TRUE|false|False|FALSE")
_NULL_TEXT = re.compile(r"~|null|Null|NULL|")
_INT_TEXT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT_TEXT = re.compile(
    r"[-+]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)


def as_bool(text: str) -> bool | None:
    """``text`` as a YAML 1.2 boolean (``true``, ``False``...), or ``None`` if it is none."""
    return text.lower() == "true" if _BOOL_TEXT.fullmatch(text) else None


def as_number(text: str) -> int | float | None:
    """``text`` as a plain decimal number (``42``, ``1.5``, ``1e3``), or ``None`` if it is none.

    Integers of more digits than Python turns into an ``int`` (4,300 by default) are their
    ``float`` (``inf`` past 308 digits), as ``1e5000`` is."""
    if _INT_TEXT.fullmatch(text):
        number = _int(text)
        return float(text) if number is None else number
    if _FLOAT_TEXT.fullmatch(text):
        lowered = text.lower()
        return float(lowered.replace(".", "") if lowered.endswith((".inf", ".nan")) else text)
    return None


def _int(text: str) -> int | None:
    """``int(text)`` for decimal digits, or ``None`` when it has more digits than Python
    converts (``sys.get_int_max_str_digits``, 4,300 by default)."""
    try:
        return int(text)
    except ValueError:
        return None


class _ValueError(Exception):
    """A scalar does not fit its tag; the message says what to write."""


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_PREFIX) if tag.startswith(_PREFIX) else tag


def _construct(tag: str, text: str) -> Any:
    """The value of the scalar ``text`` tagged ``tag`` (implicitly or explicitly)."""
    if tag in _TEXT_TAGS:
        return text
    if tag == _NULL and _NULL_TEXT.fullmatch(text):
        return None
    if tag == _BOOL and (flag := as_bool(text)) is not None:
        return flag
    if tag == _INT and _INT_TEXT.fullmatch(text):
        # More digits than Python turns into an int (sys.get_int_max_str_digits): the text
        # written, which is how a value compares and is sent; a key that needs a number
        # says it is none. (int() raised ValueError: check, serve and try stopped with a
        # traceback.)
        whole = _int(text)
        return text if whole is None else whole
    if tag == _FLOAT and (number := as_number(text)) is not None:
        return float(number)
    expected = {
        _NULL: "null; write null or ~",
        _BOOL: "true or false; write one of those",
        _INT: "a whole number; write one like 42",
        _FLOAT: "a number; write one like 1.5",
    }.get(tag)
    if expected is None:
        msg = (
            f"tag {_tag_name(tag)!r} is not supported here (values are text, numbers, "
            "true/false or null); remove it"
        )
    else:
        msg = f"{text!r} is not {expected}, or remove the {_tag_name(tag)} tag"
    raise _ValueError(msg)


class _Refused(yaml.MarkedYAMLError):
    """A file refused for its shape (an alias loop, too deep, too many aliases)."""


def _refused(message: str, event: yaml.Event) -> _Refused:
    return _Refused(None, None, message, cast(yaml.Mark, event.start_mark))


class _Loader(yaml.SafeLoader):
    """SafeLoader composing with the resolvers above and the bounds on nesting and aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # lists and mappings open around the node being composed
        self._open: set[str] = set()  # anchors whose values are being composed
        self._size: dict[int, int] = {}  # node id -> values in it, aliases expanded
        self._height: dict[int, int] = {}  # node id -> levels of lists and mappings in it
        self._aliased = 0  # values the file's aliases stand for so far

    def compose_document(self) -> yaml.Node:
        self._size.clear()
        self._height.clear()
        return cast(yaml.Node, super().compose_document())

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            return self._alias(parent, index, event)
        collection = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if collection:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _refused(
                    f"values nested more than {MAX_DEPTH} levels deep; configuration "
                    "needs a few levels, write this one flatter",
                    event,
                )
        anchor = event.anchor
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = cast(yaml.Node, super().compose_node(parent, index))
        finally:
            if collection:
                self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        self._size[id(node)] = 1 + sum(self._size[id(child)] for child in children)
        heights = [self._height[id(child)] for child in children]
        self._height[id(node)] = 1 + max(heights, default=0) if collection else 0
        return node

    def _alias(self, parent: yaml.Node | None, index: Any, event: yaml.AliasEvent) -> yaml.Node:
        name = event.anchor
        if name in self._open:
            raise _refused(
                f"alias *{name} is inside the value it names (a loop); write the value out instead",
                event,
            )
        node = cast(yaml.Node, super().compose_node(parent, index))
        self._aliased += self._size[id(node)]
        if self._aliased > MAX_ALIASED:
            raise _refused(
                f"aliases in this file stand for more than {MAX_ALIASED} values (aliases of "
                "aliases multiply); write the values out, or alias fewer of them",
                event,
            )
        if self._depth + self._height[id(node)] > MAX_DEPTH:
            raise _refused(
                f"alias *{name} nests values more than {MAX_DEPTH} levels deep; "
                "configuration needs a few levels, write this one flatter",
                event,
            )
        return node


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    (_BOOL, _BOOL_TEXT, "tTfF"),
    (_NULL, _NULL_TEXT, ["~", "n", "N", ""]),
    (_INT, _INT_TEXT, "-+0123456789"),
    (_FLOAT, _FLOAT_TEXT, "-+0123456789."),
    (_MERGE, re.compile(r"<<"), "<"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_regexp.pattern})$"), list(_first))

#: ``$${`` (a literal ``${``), ``${NAME}`` / ``${NAME:default}`` (groups 1 and 2), or any
#: other ``${...`` (group 3: a name with a dash or a space, an unclosed brace), which would
#: otherwise stay in the value as written and be used silently (as a token, say).
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}|(\$\{[^}]*\}?)")


@dataclass(slots=True)
class Node:
    """A located YAML value: a dict of nodes, a list of nodes, or a scalar."""

    value: Any
    file: str
    line: int
    #: Scalars: the text as written, before ``${VAR}`` expansion.
    raw: str | None = None
    #: Mappings: the line of each key.
    key_lines: dict[str, int] = field(default_factory=dict)
    #: Scalars: whether an unset ``${VAR}`` in it was given a stand-in (``leadhub try``):
    #: its value is then no real value, and checks of its form do not apply.
    stand_in: bool = False
    #: Scalars: whether a problem with the value was already reported (an unset ``${VAR}``,
    #: text that does not fit its tag): what is left in its place is no real value, and an
    #: error about it would be a follow-on (``Reader.error`` drops those).
    reported: bool = False
    #: Scalars: the variables whose value came from the file their ``NAME_FILE`` names, as
    #: (name, path): an empty value's fix is then to write that file, not ``export NAME``.
    files: tuple[tuple[str, str], ...] = ()

    @property
    def expanded(self) -> bool:
        """Whether the value is text from ``${VAR}`` expansion (a typed field parses it)."""
        return self.raw is not None and "${" in self.raw

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def plain(self) -> Any:
        """The value as plain Python (dicts, lists, scalars), lines dropped."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def is_map(self) -> bool:
        return isinstance(self.value, dict)


def variables(raw: str | None) -> list[str]:
    """The names of the ``${VAR}`` / ``${VAR:default}`` written in ``raw``, in order."""
    return [m.group(1) for m in _VAR.finditer(raw or "") if m.group(1)]


def uses_variables_only(raw: str | None) -> bool:
    """Whether ``raw`` is exactly one ``${VAR}`` with no default (how a secret is written)."""
    return bool(raw) and re.fullmatch(r"\s*\$\{[A-Za-z_][A-Za-z0-9_]*\}\s*", raw or "") is not None


#: The most a ``NAME_FILE`` may hold: secrets and settings, not documents.
MAX_SECRET_FILE = 65_536


def from_environ(environ: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    """``${NAME}``'s value: ``NAME``, or the content of the file ``NAME_FILE`` names (as
    Docker and Kubernetes hand secrets over, in files; one trailing newline dropped), read
    anew at each load, so that a reload picks up a secret rotated in its file.

    Returns ``(value, None)``, ``(None, None)`` when neither is set, or ``(None, problem)``.
    """
    if name in environ:
        if f"{name}_FILE" in environ:
            return None, (
                f"variable ${{{name}}}: both {name} and {name}_FILE are set; unset one "
                f"({name}_FILE names a file holding the value)"
            )
        value = environ[name]
        if not value.isascii() and not _utf8(value):
            return None, (
                f"variable ${{{name}}} holds bytes that are not UTF-8 (a value written in "
                "another encoding, such as Latin-1 by an --env-file saved so); set it again "
                "in UTF-8"
            )
        return value, None
    path = environ.get(f"{name}_FILE")
    if path is None:
        return None, None
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_SECRET_FILE + 1)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return None, (
            f"variable ${{{name}}}: {name}_FILE names {path!r}, which cannot be read "
            f"({reason}); point it at a readable UTF-8 file holding the value"
        )
    if len(text) > MAX_SECRET_FILE:
        return None, (
            f"variable ${{{name}}}: {name}_FILE names {path!r}, which holds more than "
            f"{MAX_SECRET_FILE} characters; point it at the file holding only the value"
        )
    return text.removesuffix("\n").removesuffix("\r"), None


def _utf8(value: str) -> bool:
    """Whether ``value`` (a variable's) was UTF-8 in the environment: Python hands other
    bytes over as lone surrogates, which the loader took and nothing could encode, a source's
    key least of all: ``check`` said ok, serve stopped at start with a traceback, and a reload
    bringing such a variable in failed after the dispatcher had reloaded."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _malformed(written: str) -> str:
    """The error for ``written``, a ``${...`` that is no variable reference, with the fix."""
    problem = "is not a variable name" if written.endswith("}") else "has no closing '}'"
    inside = written.removeprefix("${").removesuffix("}").split(":", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", inside.strip()).strip("_")  # MY-TOKEN -> MY_TOKEN
    example = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else "NAME"
    return (
        f"{written!r} {problem}; write ${{{example}}} or ${{{example}:default}} (a name is "
        "letters, digits and _, not starting with a digit), or $${ for a literal ${"
    )


class _Builder:
    def __init__(
        self, file: str, environ: Mapping[str, str], issues: Issues, *, stand_ins: bool = False
    ) -> None:
        self.file = file
        self.environ = environ
        self.issues = issues
        self.stand_ins = stand_ins
        self.stood_in = 0
        #: The variables of the scalar being expanded read from their ``NAME_FILE``.
        self.files: list[tuple[str, str]] = []

    def expand(self, text: str, line: int) -> tuple[str, bool]:
        """``text`` with variables replaced, and whether an unset one was met (reported).
        A stand-in given for one is counted in ``self.stood_in``."""
        unset = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unset
            if match.group(0) == "$${":
                return "${"
            if match.group(3) is not None:
                unset = True
                self.issues.error(self.file, line, _malformed(match.group(3)))
                return ""
            name, default = match.group(1), match.group(2)
            value, problem = from_environ(self.environ, name)
            if value is not None:
                if name not in self.environ:  # (from the file NAME_FILE names)
                    self.files.append((name, self.environ[f"{name}_FILE"]))
                return value
            if problem is not None:
                unset = True
                self.issues.error(self.file, line, problem)
                return ""
            if default is not None:
                return default
            if self.stand_ins:
                self.stood_in += 1
                return f"unset-{name}"
            unset = True
            self.issues.error(
                self.file,
                line,
                f"variable ${{{name}}} is not set; export {name}=... before starting "
                "the hub (a reload sees only the environment the hub started with: "
                f"restart it) (a value that is no secret may have a default: "
                f"${{{name}:value}})",
            )
            return ""

        return _VAR.sub(substitute, text), unset

    def scalar(self, node: yaml.ScalarNode) -> Node:
        line = node.start_mark.line + 1
        raw = node.value
        cut = _cut_by_comment(node)
        if cut is not None:
            self.issues.warn(self.file, line, cut)
        if "${" in raw and node.tag in (_STR, _INT, _FLOAT, _BOOL, _NULL):
            # The expanded text is the value, exactly: never read again as YAML.
            before = self.stood_in
            self.files = []
            expanded, unset = self.expand(raw, line)
            stand_in = self.stood_in > before
            files = tuple(self.files)
            return Node(
                expanded, self.file, line, raw=raw, stand_in=stand_in, reported=unset, files=files
            )
        try:
            value = _construct(node.tag, raw)
        except _ValueError as exc:
            self.issues.error(self.file, line, str(exc))
            return Node(raw, self.file, line, raw=raw, reported=True)
        return Node(value, self.file, line, raw=raw)

    def build(self, node: yaml.Node) -> Node:
        """``node`` as a :class:`Node`; the loader has bounded its depth and its aliases."""
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        line = node.start_mark.line + 1
        if node.tag not in (_SEQ, _MAP):
            self.issues.error(
                self.file,
                line,
                f"tag {_tag_name(node.tag)!r} is not supported here (write a plain list or "
                "mapping); remove it",
            )
        if isinstance(node, yaml.SequenceNode):
            items = [self.build(item) for item in node.value]
            pairs = zip(node.value, items, strict=True)
            joined = node.flow_style and any(
                [self.joined(item, built, line) for item, built in pairs]
            )
            # (the list's own errors, a transform list's say, are follow-ons then too)
            return Node(items, self.file, line, reported=joined)
        return self.mapping(cast(yaml.MappingNode, node))  # the only other kind compose gives

    def joined(self, item: yaml.Node, built: Node, opened: int) -> bool:
        """Refuse an unquoted item of a ``[`` list (opened on line ``opened``) that runs
        over several lines: YAML joins the lines of a plain item with spaces, so items
        written one a line with a ``,`` missing between them are one item. Nothing said so:
        ``properties: [email`` then ``firstname]`` loaded as the one property
        'email firstname', and ``path:`` or ``transform:`` lists were told their joined
        item was no JSONPath or several transforms in one text. Whether it was refused."""
        if not isinstance(item, yaml.ScalarNode) or item.style is not None:
            return False
        start, end = item.start_mark, item.end_mark
        if end.line <= start.line:
            return False
        after = _next_part(start, end)
        self.issues.error(
            self.file,
            after,
            f"the '[' opened on line {opened} goes on, and this line's item follows the one "
            f"before it with no ',' between them, so YAML read them as one item, "
            f"{built.raw!r}: end line {start.line + 1} with ',' (or, if it is one value "
            "over several lines, put it in quotes)",
        )
        built.reported = True
        return True

    def mapping(self, node: yaml.MappingNode) -> Node:
        line = node.start_mark.line + 1
        out: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.error(self.file, key_line, "a key must be plain text")
                continue
            if key_node.tag == _MERGE:
                merged.extend(self.merge_sources(value_node, key_line))
                continue
            key = str(key_node.value)
            _glued_colon(key_node, value_node, self.file, key_line, self.issues)
            if key in out:
                self.issues.error(
                    self.file,
                    key_line,
                    f"key {key!r} appears twice (first on line {key_lines[key]}); keep one",
                )
                continue
            key_lines[key] = key_line
            out[key] = self.build(value_node)
        if merged:
            # "<<" merges: the keys written here win, then the first merged mapping's.
            merged_values: dict[str, Node] = {}
            merged_lines: dict[str, int] = {}
            for source in merged:
                for key, value in source.value.items():
                    if key not in out and key not in merged_values:
                        merged_values[key] = value
                        merged_lines[key] = source.key_lines.get(key, source.line)
            out = {**merged_values, **out}
            key_lines = {**merged_lines, **key_lines}
        return Node(out, self.file, line, key_lines=key_lines)

    def merge_sources(self, node: yaml.Node, line: int) -> list[Node]:
        """The mappings a ``<<`` key merges: one mapping or a list of them."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not all(isinstance(item, yaml.MappingNode) for item in items):
            self.issues.error(
                self.file,
                line,
                "'<<' merges a mapping into this one, like <<: *defaults, or a list of "
                "them, like <<: [*a, *b]; point it at a mapping or remove it",
            )
            return []
        return [self.build(item) for item in items]


#: What follows a plain value on its line when a comment starts right after it with text
#: glued to its '#' (``Ad #5``): spaces, the '#', then no space.
_GLUED_COMMENT = re.compile(r"[ \t]+#(?=[^\s#])([^\n\r]*)")


def _cut_by_comment(node: yaml.ScalarNode) -> str | None:
    """The warning for a plain value that a comment cut short (``value: Ad #5`` is the value
    ``Ad``; ``$.form_id: Form #2`` matches ``Form``), else ``None``: YAML reads `` #`` as a
    comment's start, and a value written so was sent, or compared, without its end, silently.
    Only a '#' with text right after it counts (``# a comment`` is written with a space)."""
    end = node.end_mark
    if node.style is not None or not node.value or not isinstance(end.buffer, str):
        return None
    glued = _GLUED_COMMENT.match(end.buffer, end.pointer)
    if glued is None:
        return None
    meant = f"{node.value} #{glued.group(1).rstrip()}"
    return (
        f"the value here is {node.value!r}: YAML reads ' #' and what follows on the line as a "
        f"comment; if that belongs to the value, put it in quotes: "
        f"{json.dumps(meant, ensure_ascii=False)}"
    )


#: A ':' with text right after it: YAML reads it as part of the text (``a:b`` is one scalar).
_GLUED_COLON = re.compile(r":(?=[^\s])")


def _glued_colon(key: yaml.Node, value: yaml.Node, file: str, line: int, issues: Issues) -> None:
    """Report a key written plain with a ':' and text right after it, and no value
    (``{path:$.email}``, ``match: {$.form_id:abc}``): YAML parts a key from its value only
    at a ':' followed by a space, so it read one key, ``path:$.email``, given nothing, and
    what followed was told as that key's problem (an unknown key, a JSONPath that does not
    compile, a field that is nothing) without the cause."""
    if not isinstance(key, yaml.ScalarNode) or key.style is not None:
        return
    if not isinstance(value, yaml.ScalarNode) or value.tag != _NULL or value.value:
        return
    if _GLUED_COLON.search(key.value) is None:
        return
    before, after = key.value.split(":", 1)
    issues.error(
        file,
        line,
        f"{key.value!r} is read as a key given no value: YAML parts a key from its value at "
        f"a ':' followed by a space; write {before}: {after} (or the key in quotes, if its "
        "':' is meant)",
    )


#: Whether a key may be written where it stands: ``belongs(parents, key)``, ``parents``
#: being the keys of the block mappings around it, outermost first (``()`` at column 0).
Belongs = Callable[[tuple[str, ...], str], bool]


def _next_part(start: yaml.Mark, end: yaml.Mark) -> int:
    """The line (1-based) where the second line of a plain scalar between ``start`` and
    ``end`` begins: the first line after ``start``'s with text on it."""
    buffer = start.buffer
    if not isinstance(buffer, str):
        return start.line + 2
    text = buffer[start.pointer : end.pointer]
    first_break = text.find("\n")
    rest = len(text) - len(text[first_break:].lstrip())
    return start.line + 1 + text.count("\n", 0, rest)


def read_documents(
    text: str,
    file: str,
    environ: Mapping[str, str],
    issues: Issues,
    *,
    stand_ins: bool = False,
    belongs: Belongs | None = None,
) -> Iterator[Node]:
    """Every non-empty YAML document in ``text``; a syntax error is an issue, not a raise.

    With ``stand_ins``, an unset ``${VAR}`` without a default becomes ``unset-VAR`` instead
    of an error (``leadhub try`` maps documents and needs no secrets). ``belongs`` tells
    whether a key is one that may be written where it stands (``name`` at column 0,
    ``Phone`` under ``fields``): a syntax error is not put on such a key's line for being
    less deep than the lines around it (see :func:`_dedented`); without it, no key is
    known to belong anywhere.
    """
    builder = _Builder(file, environ, issues, stand_ins=stand_ins)
    invisible = _invisible(text)
    if invisible is not None:
        issues.unread.add(file)
        issues.error(file, *invisible)
        return
    try:
        for document in yaml.compose_all(text, Loader=_Loader):
            if isinstance(document, yaml.ScalarNode) and document.tag == _NULL:
                continue  # an empty document
            yield builder.build(document)
    except yaml.YAMLError as exc:
        issues.unread.add(file)  # its documents after the error were never seen
        _report(exc, text, file, issues, belongs or _nowhere)


def _nowhere(parents: tuple[str, ...], key: str) -> bool:
    """No key is known to belong anywhere (``read_documents`` given no ``belongs``)."""
    return False


def _report(exc: yaml.YAMLError, text: str, file: str, issues: Issues, belongs: Belongs) -> None:
    """Record ``exc``, raised composing ``text``, as an error at its line with the fix."""
    if isinstance(exc, _Refused):
        mark = exc.problem_mark
        issues.error(file, mark.line + 1 if mark is not None else 1, str(exc.problem))
    elif isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "invalid YAML"
        lines = text.split("\n")
        line = _culprit(exc, lines)
        fix = _comment_in_flow(exc, lines) or _unclosed(exc, lines) or _missing_comma(exc, lines)
        if fix is not None:
            issues.error(file, line, f"YAML syntax error: {problem}; {fix}")
            return
        written = lines[line - 1] if 0 < line <= len(lines) else ""
        dedented = _dedented(lines, line, belongs)
        if dedented is not None:
            suspect, parents = dedented
            column = _indent(lines[suspect - 1])
            if column == 0:
                where = "column 0 between indented lines"
                read_as = "a top-level key"
            else:
                where = f"column {column}, less deep than the lines around it"
                read_as = f"a key of {parents[-1]!r}"
            issues.error(
                file,
                suspect,
                f"YAML syntax error: this line starts at {where} (a key that lost its "
                f"indentation), so YAML read it as {read_as} and stopped at line {line} "
                f"({problem}); indent it as deep as the keys beside it",
            )
            return
        issues.error(file, line, f"YAML syntax error: {problem}; {_syntax_fix(problem, written)}")
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        issues.error(file, line, _unreadable(exc))
    else:
        issues.error(file, 1, f"YAML error: {exc}")


def _culprit(exc: yaml.MarkedYAMLError, lines: list[str]) -> int:
    """The line (1-based; pyyaml's marks are 0-based) a user must fix for ``exc``.

    pyyaml's ``problem_mark`` is where it noticed the problem, and its ``context_mark``
    where what it was reading began: mostly the problem is the line to fix (the context is
    the enclosing mapping, often line 1). Not for a key never given its ``:`` (``while
    scanning a simple key``: noticed on the next line), a quote never closed (noticed at
    the file's end) nor a ``[`` or ``{`` never closed (noticed where the file or document
    ends, or at the next key): the key's line, the quote's and the bracket's are the ones
    to fix.
    """
    context = exc.context or ""
    problem = exc.problem or ""
    if (opened := _open_at_end(exc, lines)) is not None:
        return opened[0]
    unclosed = context == "while scanning a quoted scalar" and "end of stream" in problem
    if exc.context_mark is not None and (
        context == "while scanning a simple key" or unclosed or _unclosed(exc, lines) is not None
    ):
        return exc.context_mark.line + 1
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else 1


#: pyyaml's context for a flow collection, and the brackets that open and close it.
_FLOW = {"while parsing a flow sequence": ("[", "]"), "while parsing a flow mapping": ("{", "}")}


def _flow_error(exc: yaml.MarkedYAMLError) -> tuple[str, str, str] | None:
    """For pyyaml's "expected ',' or ']' (or '}'), but got X" inside a ``[`` or ``{``: the
    bracket that opened it, the one that closes it, and X; ``None`` for any other error."""
    brackets = _FLOW.get(exc.context or "")
    problem = exc.problem or ""
    if brackets is None or exc.context_mark is None or exc.problem_mark is None:
        return None
    opening, closing = brackets
    if not problem.startswith(f"expected ',' or '{closing}', but got "):
        return None
    return opening, closing, problem.rsplit("but got ", 1)[1]


def _unclosed(exc: yaml.MarkedYAMLError, lines: list[str]) -> str | None:
    """The fix when ``exc`` is a ``[`` or ``{`` never closed (``transform: [trim, lower``
    with no ``]``), ``None`` for any other error.

    pyyaml reads on past the bracket's line, to the end of the file or document or to
    the next key's ``:``, and expects a ``,`` or the closing bracket there: its context
    mark is the bracket, on the line to fix. When YAML read on to a later line and the
    bracket is closed further on, it is not that: an item of the bracket is not parted
    from the one before it by a ``,`` (:func:`_missing_comma`). A bracket closed by the
    other kind on its own line (``[trim, lower}``) is one too.
    """
    opened = _open_at_end(exc, lines)
    if opened is not None:
        _, opening, closing, reach = opened
        return (
            f"the {opening!r} opened on this line is never closed ({reach}); "
            f"close it with {closing!r} after its last item"
        )
    flow = _flow_error(exc)
    if flow is None:
        return None
    opening, closing, got = flow
    start, stop = exc.context_mark, exc.problem_mark
    assert start is not None and stop is not None  # (_flow_error)
    if got == "'<stream end>'":
        reach = "the file ends inside it"
    elif got in ("'<document start>'", "'<document end>'"):
        reach = f"its document ends at line {stop.line + 1} inside it"
    elif stop.line > start.line:
        if _closed_later(lines, start.line, start.column):
            return None
        reach = f"YAML read on to line {stop.line + 1} as inside it"
    elif got in ("']'", "'}'"):
        return (
            f"the {opening!r} opened on this line meets a {got} before its {closing!r}; "
            f"close it with {closing!r} before the {got}"
        )
    else:
        return None  # on its own line, with no bracket closing it wrongly: a missing ','?
    return (
        f"the {opening!r} opened on this line is never closed ({reach}); "
        f"close it with {closing!r} after its last item"
    )


#: What pyyaml found where it expected a flow collection's next item, when the file or the
#: document ended inside the collection, and how the fix says it.
_ENDS = {
    "'<stream end>'": "the file ends inside it",
    "'<document start>'": "its document ends inside it",
    "'<document end>'": "its document ends inside it",
}


def _open_at_end(exc: yaml.MarkedYAMLError, lines: list[str]) -> tuple[int, str, str, str] | None:
    """For a ``[`` or ``{`` still open, with nothing in it after its last ``[``, ``{`` or
    ``,``, when the file or document ends (``bogus: [`` as the last line): the line
    (1-based) of the innermost bracket still open there, the bracket, the one that closes
    it and where it ends; ``None`` for any other error.

    pyyaml marks both its context and the problem where the file ends, not at the bracket
    (a bracket holding an item gets :func:`_unclosed`'s error instead, marked at it). The
    brackets are read as :func:`_closed_later` reads them, from the document's start.
    """
    problem = exc.problem or ""
    found = problem.rsplit("but found ", 1)[-1]
    stop = exc.problem_mark
    if (
        exc.context != "while parsing a flow node"
        or not problem.startswith("expected the node content, but found ")
        or found not in _ENDS
        or stop is None
    ):
        return None
    before = range(min(stop.line, len(lines)) - 1, -1, -1)
    first = next((n + 1 for n in before if lines[n].startswith("---")), 0)
    opened: list[tuple[int, str]] = []
    for number, char in _brackets(lines, first, stop=stop.line + 1):
        if char in "[{":
            opened.append((number + 1, char))
        elif opened:
            opened.pop()
    if not opened:
        return None
    line, opening = opened[-1]
    return line, opening, "]" if opening == "[" else "}", _ENDS[found]


def _closed_later(lines: list[str], line: int, column: int) -> bool:
    """Whether the ``[`` or ``{`` at 0-based ``line`` and ``column`` is closed before its
    document ends: brackets counted as they open and close (either kind). A rough reading,
    only to tell a bracket never closed from one whose items lack a ``,`` between them."""
    depth = 0
    for _, char in _brackets(lines, line, column):
        depth += 1 if char in "[{" else -1
        if depth == 0:
            return True
    return False


def _brackets(
    lines: list[str], line: int, column: int = 0, stop: int | None = None
) -> Iterator[tuple[int, str]]:
    """Each ``[``, ``{``, ``]`` and ``}`` from 0-based ``line`` and ``column`` on, with its
    0-based line, those inside quotes and comments passed over, until the document ends
    (a ``---`` or ``...`` line after the first) or before line ``stop``. A rough reading of
    YAML (a ``#`` in a word is taken for a comment; a ``'`` does not run on past its line,
    as one in a plain word would), for the errors' fixes only."""
    quote = ""
    for number in range(line, len(lines) if stop is None else min(stop, len(lines))):
        text = lines[number]
        if number > line and text.startswith(("---", "...")):
            return
        for char in text[column if number == line else 0 :]:
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#":
                break
            elif char in "[]{}":
                yield number, char
        quote = "" if quote == "'" else quote


def _comment_in_flow(exc: yaml.MarkedYAMLError, lines: list[str]) -> str | None:
    """The fix when a ``[`` or ``{`` is closed on its own line only after a `` #`` followed by
    text (``{value: Ad #5}``, ``match: {$.form: Form #2}``): YAML reads `` #`` as a comment's
    start, so the value ended before it and the closing bracket was never read. pyyaml's
    error was told as a bracket never closed, "close it with '}' after its last item", on a
    line that visibly closes it. ``None`` for any other error."""
    opened = _open_at_end(exc, lines)
    if opened is not None:
        number, _, closing, _ = opened
        column = 0
    else:
        flow = _flow_error(exc)
        if flow is None or exc.context_mark is None:
            return None
        _, closing, _ = flow
        number, column = exc.context_mark.line + 1, exc.context_mark.column
    if not 0 < number <= len(lines):
        return None
    written = lines[number - 1]
    masked = _structure(written)  # (a comment masked as spaces, a quoted scalar as q)
    at = next(
        (i for i in range(column, len(written)) if written[i] == "#" and masked[i] == " "), None
    )
    if at is None or written[at + 1 : at + 2] in ("", " ", "\t") or closing not in written[at:]:
        return None  # (a comment written "# ..." is one: the bracket is not closed)
    start = max(written.rfind(mark, column, at) for mark in ("{", "[", ",", ": ")) + 1
    while start < at and written[start] in ": \t":
        start += 1
    tail = written[at:]
    end = min((i for i in (tail.find(","), tail.find(closing)) if i >= 0), default=len(tail))
    value = (written[start:at] + tail[:end]).strip()
    return (
        f"' #' starts a comment in YAML, so the rest of this line was not read, its {closing!r} "
        f"too; put the value holding '#' in quotes: {json.dumps(value, ensure_ascii=False)}"
    )


def _missing_comma(exc: yaml.MarkedYAMLError, lines: list[str]) -> str | None:
    """The fix when ``exc`` is an item of a ``[`` or ``{`` that goes on over several lines,
    not parted from the item before it by a ``,`` (``gg: "Google"`` then ``tt: "TikTok"``
    on the next line); ``None`` for any other error (:func:`_unclosed` tells a bracket never
    closed). pyyaml stops at the item after the missing ``,``: the error's line."""
    flow = _flow_error(exc)
    if flow is None or _unclosed(exc, lines) is not None:
        return None
    opening, _, got = flow
    start, stop = exc.context_mark, exc.problem_mark
    assert start is not None and stop is not None  # (_flow_error)
    if stop.line <= start.line or got in ("']'", "'}'"):
        return None
    if got == "'{'" and lines[stop.line][: stop.column].endswith("$"):
        # A ${VAR} not in quotes, on a line of its own: its { opens a mapping. No ',' is
        # missing (it was told to end the line above, the '[' itself): _syntax_fix says to
        # quote it, as for one on the bracket's line.
        return None
    before = next(
        (
            number
            for number in range(stop.line, start.line, -1)
            if lines[number - 1].strip() and not lines[number - 1].lstrip().startswith("#")
        ),
        start.line + 1,
    )
    return (
        f"the {opening!r} opened on line {start.line + 1} goes on, and this line's item follows "
        f"the one before it with no ',' between them: end line {before} with ','"
    )


def _dedented(lines: list[str], found: int, belongs: Belongs) -> tuple[int, tuple[str, ...]] | None:
    """The line before ``found`` (1-based; blank and comment lines passed over) when it is a
    key that lost its indentation, with the keys around it (see :data:`Belongs`): less deep
    than the lines on either side of it, of which the next (``found``) sits no deeper than
    the one before (or under a key opening a block), and not a key that ``belongs`` where
    it stands (at column 0 ``name``, under ``fields`` an attribute like ``Phone``: the
    line at ``found`` is then the one indented too deep, as in ``endpoint: web`` then
    ``  target: crm``).

    YAML takes such a line as a key of the mapping it lines up with (at column 0, a new
    top-level key; at column 2 under ``fields``, a field), and only the deeper line after
    it is an error (a value's text going on, "mapping values are not allowed here", or a
    mapping where none may start): reported there, the error was one line late, at a
    line that is right as written. ``None`` when the line at ``found`` is the one to fix.
    """
    content = [
        number
        for number in range(1, min(found, len(lines) + 1))
        if lines[number - 1].strip() and not lines[number - 1].lstrip().startswith("#")
    ]
    if len(content) < 2 or found > len(lines):
        return None
    before, suspect = content[-2], content[-1]
    here = _indent(lines[found - 1])
    above = _indent(lines[before - 1])
    written = lines[suspect - 1]
    column = _indent(written)
    if here <= column or above <= column or written.startswith(("---", "...")):
        return None
    if column and (":" not in written or written.lstrip().startswith("-")):
        return None  # not a key (a list item, a value going on): nothing to say of it
    parents = _parents(lines, suspect)
    if parents is None or belongs(parents, _key(written)):
        return None
    opens = _opens(lines[before - 1])
    return (suspect, parents) if here <= above or opens else None


def _parents(lines: list[str], number: int) -> tuple[str, ...] | None:
    """The keys of the block mappings around line ``number``, outermost first, read from
    the lines above it that are less deep; ``None`` when one of them is no ``key:`` line
    opening a block (a list item, say): what is around it is not known then."""
    parents: list[str] = []
    column = _indent(lines[number - 1])
    for line in reversed(lines[: number - 1]):
        if not column:
            break
        if not line.strip() or line.lstrip().startswith("#") or _indent(line) >= column:
            continue
        if line.lstrip().startswith("-") or not _opens(line):
            return None
        parents.append(_key(line))
        column = _indent(line)
    return tuple(reversed(parents)) if not column else None


def _key(line: str) -> str:
    """The key written on ``line`` (``key: value``), unquoted."""
    return line.split(":", 1)[0].strip().strip("'\"")


def _opens(line: str) -> bool:
    """Whether ``line`` is a key whose value is the block below it (``fields:``)."""
    return line.split(" #")[0].rstrip().endswith(":")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _syntax_fix(problem: str, written: str) -> str:
    """How to fix the YAML syntax error ``problem`` found on the line ``written``."""
    if "'\\t'" in problem or "tab character" in problem:
        return "YAML indents with spaces only: replace the tabs with spaces"
    if "expected <block end>, but found '<block mapping start>'" in problem:
        # A key whose indentation lines up with no open mapping above it (deeper than a key
        # that has its value already, or between two levels).
        return (
            "this line is indented deeper than the line above it allows (that key has its "
            "value already) or between two levels; check the indentation of this line and "
            "of the one above it: each key as deep as the keys beside it"
        )
    if "found unexpected end of stream" in problem:
        return "a quote opened on this line is never closed; close it"
    if "could not find expected ':'" in problem:
        return (
            "the key on this line has no ':' after it; write key: value (or, if the line "
            "goes on with the value above it, indent it deeper than that value's key)"
        )
    if "but found '-'" in problem and written.startswith("-"):
        return (
            "this list item starts at column 0 (it lost its indentation); indent it as deep "
            "as the items of its list"
        )
    if _UNQUOTED_MAP.search(written):
        # map({a: b}) unquoted: YAML reads its { as a mapping inside { } or [ ], and its ': '
        # as a key's anywhere (the hint blamed a JSONPath, or said only to quote values).
        return (
            "a map({...}) transform must be in quotes, since YAML reads its { } and ': ' as "
            'its own: transform: "map({a: Alpha, b: Beta})"; or write it in YAML, '
            "transform: {map: {a: Alpha, b: Beta}} (in a list: [trim, {map: {a: b}}])"
        )
    if "${" in written and "but got '{'" in problem:
        # ${VAR} inside { } or [ ]: the { of ${ opens a mapping there.
        return 'inside { } or [ ], put a ${VAR} in quotes, like { value: "${VAR}" }'
    alias = re.search(r"found undefined alias '([^']*)'", problem)
    if alias is not None:
        # Anchors are YAML's own: one is known only in its document, after it is written.
        name = alias.group(1)
        return (
            f"*{name} names no anchor &{name} written above it in this document: an anchor "
            "is known only in its own document (between ---) and below it; write the anchor "
            "there or the values out, or quote a text that starts with '*'"
        )
    early = _quote_closed_early(written)
    if early is not None:
        return early
    if _unquoted_path_in_brackets(problem, written):
        return (
            "inside { } or [ ], a JSONPath holding [ ] or * must be in quotes, like "
            '{ path: "$.answers[0].email" } or { "$.tags[*]": vip } (its [ and * are YAML\'s '
            "there); or write it in block style, each key on a line of its own, where it "
            "needs none"
        )
    return (
        "check the indentation, and quote values that hold ': ', ' #', "
        "or start with '[', '{', '*', '&' or '@'"
    )


def _quote_closed_early(written: str) -> str | None:
    """The fix when a quoted value on the line ``written`` holds its own kind of quote
    (``'$.answers[?(@.ref=='email')].email'``, a filter's quotes inside the path's): the
    value ends at that quote, and the text right after it was read as YAML (a syntax error
    whose general hint, to check the indentation, did not fit). ``None`` when every quoted
    value on the line is followed by what may follow one (a space, ``,``, ``]``, ``}``,
    ``:``, the line's end)."""
    i = 0
    while i < len(written):
        char = written[i]
        if char == "#" and (i == 0 or written[i - 1] in " \t"):
            return None  # a comment: nothing after it is read
        if char not in "'\"" or not _opens_quote(written, i):
            i += 1
            continue
        end, closed = _closing(written, i + 1, char)
        if not closed:
            return None
        after = written[end : end + 1]
        if after and after not in " \t,]}:#\r":
            other = "'" if char == '"' else '"'
            inner = written[i + 1 : end - 1]
            return (
                f"the value in {char}...{char} ends at the {char} after {_tail(inner)}, so what "
                f"follows it was read as YAML: write the quotes inside it with the other kind, "
                f"{other} (a JSONPath in double quotes with single ones in its filter, like "
                f"\"$.answers[?(@.field.ref=='email')].email\"), or in block style write the "
                "path without outer quotes"
            )
        i = end
    return None


def _tail(text: str) -> str:
    """``text`` quoted for a message, its last 30 characters at most."""
    return repr(text if len(text) <= 30 else "..." + text[-27:])


#: A ``map({`` transform not in quotes (no quote right before it): on a line with a YAML
#: syntax error, the error is its ``{`` or ``: `` read as YAML's.
_UNQUOTED_MAP = re.compile(r"""(?<!["'])\bmap\(\s*\{""")


def _unquoted_path_in_brackets(problem: str, written: str) -> bool:
    """Whether ``problem`` on the line ``written`` is a JSONPath written unquoted inside
    ``{ }`` or ``[ ]`` (``Phone: { path: $.answers[0].phone }``), where ``[`` opens a list and
    ``*`` an alias: pyyaml says "expected ',' or '}', but got '['" or, for ``[*]``, "expected
    alphabetic or numeric character, but found ']'". The fix is quoting it; the general hint
    ("quote values that start with '['") did not fit a value that starts with ``$``."""
    opened = "{" in written or "[" in written
    if not opened or "$" not in written:
        return False
    got_bracket = "but got '['" in problem or "but got '{'" in problem
    star = "expected alphabetic or numeric character" in problem and "*" in written
    return got_bracket or star


#: Characters YAML reads as a line break where an editor shows none: NEL, LINE SEPARATOR and
#: PARAGRAPH SEPARATOR (pasted from a web page or a word processor).
_LINE_SEPARATOR = re.compile("[\x85\u2028\u2029]")
#: Characters an editor does not show at all: zero-width spaces and joiners, a byte order
#: mark past the file's start. In a key or a path they made a name that never matches,
#: named in the error by a character the user cannot see.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
#: A no-break space (pasted from a web page): where YAML needs a space (in the indentation,
#: after a key's ':' or a list item's '-') YAML takes it for text.
_NO_BREAK = "\u00a0"
_UNSEEN = re.compile(f"[{_ZERO_WIDTH}{_NO_BREAK}]")
#: What may stand before a character in the indentation: spaces, and list items' '-' (or
#: '?' keys), the last one perhaps without its space.
_INDENTATION = re.compile(r"[ ]*(?:[-?][ ]+)*[-?]?")
#: A key's ':' as YAML's separator, with the space after it (in the text before a character:
#: one there makes the character part of a value).
_SEPARATOR = re.compile(f"[:][ \t{_NO_BREAK}]")
#: A key's ':' ending a key (in the text after a character: the character is in the key).
_KEY_END = re.compile(r":(?:[ \t]|$)")
#: A line whose last thing is a block scalar's '|' or '>' (its comment masked out): the
#: deeper lines after it are text.
_BLOCK_START = re.compile(r"(?:^|[ \t])[|>][-+0-9]*[ \t\r]*$")


def _invisible(text: str) -> tuple[int, str] | None:
    """The first character of ``text`` that an editor shows otherwise than YAML reads it,
    as its line (as an editor numbers it) and the error; ``None`` when there is none.

    A line break only YAML sees ended a comment, and the rest of the line was read as YAML
    ("expected <block end>, but found '<scalar>'", at a line the editor numbers one less, on
    a line that looks right), or broke a value in two; every later line's number was off by
    one too: refused anywhere, comments and quotes included. A no-break space in the
    indentation made the next key text of the line above ("unknown key '\xa0 Phone'", or
    "mapping values are not allowed here" a line late); a zero-width one made a key or a path
    that never matches. Those two are refused only where YAML reads structure (see
    :func:`_unseen`): in a comment, a quoted value, a block scalar or inside a word of a
    value they are text a user may mean (a Persian ZWNJ, an emoji's ZWJ, French spacing)."""
    separator = _LINE_SEPARATOR.search(text)
    unseen = _unseen(text)
    found = [at for at in (separator.start() if separator else None, unseen) if at is not None]
    if not found:
        return None
    at = min(found)
    char = text[at]
    line = text.count("\n", 0, at) + 1
    name = f"the line holds the character U+{ord(char):04X}"
    if char == _NO_BREAK:
        return line, (
            f"{name}, a no-break space (often pasted from a web page), where YAML needs a "
            "plain space; replace it with a space"
        )
    what = (
        "which YAML reads as a line break though an editor shows none"
        if separator is not None and at == separator.start()
        else "which an editor does not show"
    )
    return line, (
        f"{name}, {what} (often pasted from a web page or a word processor); remove it, or "
        f"write it as \\u{ord(char):04x} inside double quotes if it is meant"
    )


def _unseen(text: str) -> int | None:
    """Where the first zero-width or no-break space of ``text`` stands where YAML reads
    structure, else ``None``: in the indentation or right after a list item's ``-``; right
    after a key's ``:``; in a key; in a JSONPath written plain (a value starting with ``$``);
    and, for a zero-width one, at either end of a plain word (``lsq\u200b``), where it joins
    nothing. Comments, quoted scalars and block scalars are passed over (:func:`_structure`),
    and so is one inside a word of a plain value (``Offre\xa0spéciale``); a byte order mark
    starting the file is its encoding mark."""
    masked = _structure(text)
    for match in _UNSEEN.finditer(masked):
        at = match.start()
        if at == 0 and masked[0] == "\ufeff":
            continue
        if _structural(masked, at):
            return at
    return None


def _structural(masked: str, at: int) -> bool:
    """Whether the zero-width or no-break space at ``at`` of ``masked`` (the file with its
    comments, quoted and block scalars masked out) stands where YAML reads structure."""
    line_start = masked.rfind("\n", 0, at) + 1
    line_end = masked.find("\n", at)
    line_end = len(masked) if line_end < 0 else line_end
    if _INDENTATION.fullmatch(masked, line_start, at):
        return True
    # the key and value around it: from the last '{', '[' or ',' before it on its line
    # to the next ',', ']' or '}' (a flow collection's item, or the whole line)
    start = max(masked.rfind(mark, line_start, at) for mark in "{[,") + 1
    start = max(start, line_start)
    ends = [e for e in (masked.find(mark, at, line_end) for mark in ",]}") if e >= 0]
    end = min(ends, default=line_end)
    before = masked[start:at]
    separator = _SEPARATOR.search(before)
    if separator is None:
        if before.endswith(":") or _KEY_END.search(masked, at + 1, end):
            return True  # right after a key's ':', or in a key
        value = before
    else:
        value = before[separator.end() :]
    word = re.split(r"[ \t]", masked[line_start:at])[-1].lstrip("{[,")
    if _INDENTATION.sub("", value.lstrip(" \t"), count=1).startswith("$") or word[:1] == "$":
        return True  # in a JSONPath (its own '[' and ',' are no flow collection's)
    if masked[at] == _NO_BREAK:
        return False
    edges = " \t\r\n{}[],:"
    return at == start or masked[at - 1] in edges or at + 1 >= end or masked[at + 1] in edges


def _structure(text: str) -> str:
    """``text`` with what YAML reads as text of a value masked out, every line where it
    was: comments and block scalars' lines as spaces, quoted scalars (quotes included) as
    ``q``. A line lexer, not a parser: a file YAML refuses is refused at its own error."""
    out = list(text)
    quote: str | None = None  # the quote of a quoted scalar going on past its line
    block: int | None = None  # the indentation of the line that opened a block scalar
    pos = 0
    for line in text.split("\n"):
        start = pos
        pos += len(line) + 1
        indent = len(line) - len(line.lstrip(" "))
        if block is not None:
            if not line.strip(" \t\r") or indent > block:
                out[start : start + len(line)] = " " * len(line)
                continue
            block = None
        i = 0
        if quote is not None:
            i, closed = _closing(line, 0, quote)
            out[start : start + i] = "q" * i
            if closed:
                quote = None
        while quote is None and i < len(line):
            char = line[i]
            if char == "#" and (i == 0 or line[i - 1] in " \t"):
                out[start + i : start + len(line)] = " " * (len(line) - i)
                break
            if char in "'\"" and _opens_quote(line, i):
                end, closed = _closing(line, i + 1, char)
                out[start + i : start + end] = "q" * (end - i)
                if not closed:
                    quote = char
                i = end
                continue
            i += 1
        if quote is None and _BLOCK_START.search("".join(out[start : start + len(line)])):
            block = indent
    return "".join(out)


def _opens_quote(line: str, at: int) -> bool:
    """Whether the quote at ``at`` of ``line`` opens a quoted scalar: first on the line, or
    after a key's ':', a list item's '-', a '[', '{' or ',', a tag or an anchor (in
    ``rock 'n roll`` it is text)."""
    prior = line[:at].rstrip(" \t")
    if not prior or prior[-1] in "[{,":
        return True
    if line[at - 1] not in " \t":
        return False
    return prior[-1] in ":-?" or prior.split()[-1][0] in "!&"


def _closing(line: str, at: int, quote: str) -> tuple[int, bool]:
    """Where the quoted scalar going on at ``at`` of ``line`` ends, and whether it is closed
    there: just past its closing ``quote``, or at the line's end when it goes on past it."""
    i = at
    while i < len(line):
        if quote == '"' and line[i] == "\\":
            i += 2
        elif line[i] == quote and quote == "'" and line[i + 1 : i + 2] == "'":
            i += 2  # '' is a quote inside single quotes
        elif line[i] == quote:
            return i + 1, True
        else:
            i += 1
    return len(line), False


def _unreadable(exc: yaml.reader.ReaderError) -> str:
    """The error for a character YAML refuses in a file (a control character, say)."""
    char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    return (
        f"the file holds the character U+{char:04X}, which YAML does not allow ({exc.reason}); "
        f"remove it, or write it as \\u{char:04x} inside double quotes if it is meant"
    )
