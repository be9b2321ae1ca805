"""YAML documents as trees of located values, with ``${VAR}`` expanded.

Files are composed (not loaded) with a safe loader so every key and value keeps
its line. Scalars resolve the YAML 1.2 way: only ``true``/``false`` are
booleans (``NO`` stays the string for Norway) and dates stay strings. After
``${VAR}`` / ``${VAR:default}`` expansion a plain scalar is resolved again, so
``${PORT:8000}`` is a number; a quoted one stays a string. ``$${`` writes a
literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from hub.config.issues import Issues


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_STRING_TAGS = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary")


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
    #: Scalars: whether a problem with the value was already reported (an unset ``${VAR}``):
    #: what is left in its place is no real value, and an error about it would be a follow-on.
    reported: bool = False

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


class _Builder:
    def __init__(
        self, file: str, environ: Mapping[str, str], issues: Issues, *, stand_ins: bool = False
    ) -> None:
        self.file = file
        self.environ = environ
        self.issues = issues
        self.stand_ins = stand_ins
        self.stood_in = 0
        self.loader = _Loader("")

    def expand(self, text: str, line: int) -> tuple[str, bool]:
        """``text`` with variables replaced, and whether an unset one was met (reported).
        A stand-in given for one is counted in ``self.stood_in``."""
        unset = False

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            if self.stand_ins:
                self.stood_in += 1
                return f"unset-{name}"
            nonlocal unset
            unset = True
            self.issues.error(
                self.file,
                line,
                f"variable ${{{name}}} is not set; export {name}=... before starting "
                f"(a value that is no secret may have a default: ${{{name}:value}})",
            )
            return ""

        return _VAR.sub(substitute, text), unset

    def scalar(self, node: yaml.ScalarNode) -> Node:
        line = node.start_mark.line + 1
        raw = node.value
        if node.tag in _STRING_TAGS:
            return Node(raw, self.file, line, raw=raw)
        if "${" not in raw:
            return Node(self.loader.construct_object(node), self.file, line, raw=raw)
        before = self.stood_in
        expanded, unset = self.expand(raw, line)
        stand_in = self.stood_in > before
        if unset:  # already reported; keep the text so no second "missing" error follows
            return Node(expanded, self.file, line, raw=raw, reported=True)
        if node.style is None:  # plain: resolve the expanded text as YAML would
            tag = self.loader.resolve(yaml.ScalarNode, expanded, (True, False))  # type: ignore[no-untyped-call]
        else:
            tag = "tag:yaml.org,2002:str"
        try:
            value = self.loader.construct_object(yaml.ScalarNode(tag, expanded))
        except (yaml.YAMLError, ValueError):
            value = expanded
        return Node(value, self.file, line, raw=raw, stand_in=stand_in)

    def build(self, node: yaml.Node) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return Node([self.build(item) for item in node.value], self.file, line)
        return self.mapping(cast(yaml.MappingNode, node))  # the only other kind compose gives

    def mapping(self, node: yaml.MappingNode) -> Node:
        line = node.start_mark.line + 1
        self.loader.flatten_mapping(node)  # applies "<<" merge keys
        out: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.error(self.file, key_line, "a key must be plain text")
                continue
            key = str(key_node.value)
            if key in out:
                self.issues.error(
                    self.file,
                    key_line,
                    f"key {key!r} appears twice (first on line {key_lines[key]}); keep one",
                )
                continue
            key_lines[key] = key_line
            out[key] = self.build(value_node)
        return Node(out, self.file, line, key_lines=key_lines)


def read_documents(
    text: str, file: str, environ: Mapping[str, str], issues: Issues, *, stand_ins: bool = False
) -> Iterator[Node]:
    """Every non-empty YAML document in ``text``; a syntax error is an issue, not a raise.

    With ``stand_ins``, an unset ``${VAR}`` without a default becomes ``unset-VAR`` instead
    of an error (``leadhub try`` maps documents and needs no secrets).
    """
    builder = _Builder(file, environ, issues, stand_ins=stand_ins)
    try:
        for document in yaml.compose_all(text, Loader=_Loader):
            if isinstance(document, yaml.ScalarNode) and document.tag.endswith(":null"):
                continue  # an empty document
            yield builder.build(document)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        issues.error(
            file,
            line,
            f"YAML syntax error: {problem}; check the indentation, and quote values "
            "that hold ': ', ' #', or start with '[', '{', '*', '&' or '@'",
        )
    except yaml.YAMLError as exc:
        issues.error(file, 1, f"YAML error: {exc}")
