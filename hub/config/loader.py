"""Loading a configuration directory: every ``*.yaml`` / ``*.yml`` file, every document.

``load(directory, environ)`` reads the files in name order, expands ``${VAR}``
from ``environ``, validates every document and the references between them,
and returns a :class:`~hub.config.models.Config` or raises
:class:`~hub.config.issues.ConfigError` listing every problem as
``file:line: message``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from itertools import chain, combinations
from pathlib import Path
from typing import Any

from hub.config.endpoints import (
    COMMON_ENDPOINT_KEYS,
    SOURCE_KEYS,
    TARGET_KEYS,
    SandboxSettingError,
    build_endpoint,
    build_target,
    sandbox_target,
    url_safe,
)
from hub.config.issues import ConfigError, Issues, did_you_mean
from hub.config.mappings import FIELD_KEYS, MAPPING_KEYS, build_mapping
from hub.config.models import Config, Endpoint, JsonPath, Origin, Target
from hub.config.nodes import Node, read_documents
from hub.config.reader import Reader
from hub.mapping.model import CompiledMapping, Rule, describe_rule
from hub.mapping.paths import SimplePath, parse_path
from hub.units import UnitError

KINDS = ("target", "endpoint", "mapping")
#: Every key a document has at its top level, of any kind (at column 0 they are where they
#: belong: a YAML syntax error after one is not put on its line).
DOCUMENT_KEYS = frozenset(
    (*MAPPING_KEYS, *COMMON_ENDPOINT_KEYS, *chain.from_iterable(SOURCE_KEYS.values()), *TARGET_KEYS)
)


def key_belongs(parents: tuple[str, ...], key: str) -> bool:
    """Whether ``key`` may be written under ``parents`` (the keys around it, outermost
    first): at column 0 a key of a document, in ``fields`` a LeadSquared attribute (a
    field's own key, like ``transform``, belongs under one). A YAML syntax error after a
    key that belongs where it stands is not put on its line: the deeper line after it is
    the one to fix. Anywhere else (under ``match`` and ``skip_if``, whose keys are any
    JSONPath) a key is taken to belong, as nothing says it does not.
    """
    if not parents:
        return key in DOCUMENT_KEYS
    if parents == ("fields",):
        return key not in FIELD_KEYS
    return True


def config_files(directory: Path) -> list[Path]:
    """The files ``load`` reads, in order (hidden files are left out).

    A symbolic link to nothing is among them, and so is a directory given such a name (what
    a container's bind mount of a file missing on the host makes), so that reading it
    reports it: left out, its endpoints were missing without a word.
    """
    found = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    return sorted(
        p
        for p in found
        if not p.name.startswith(".")
        and (p.is_file() or p.is_dir() or (p.is_symlink() and not p.exists()))
    )


def passed_over(directory: Path) -> list[tuple[Path, str]]:
    """Files that look like configuration but that ``load`` does not read, each with why
    and the fix: a name ending ``.YAML`` or ``.Yml`` (only the lower-case endings are read),
    and the YAML files of a subdirectory (only the directory's own files are). Their
    endpoints and mappings would be missing without a word, the hub answering 404.
    """
    found: list[tuple[Path, str]] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() and path.suffix not in (".yaml", ".yml"):  # (read, so reported)
            try:
                listed = list(path.iterdir())
            except OSError:  # not ours to read (lost+found, another user's): nothing to say
                continue
            inside = sorted(p for p in listed if _yaml_named(p) and not p.name.startswith("."))
            if inside:
                found.append(
                    (
                        inside[0],
                        f"not read: {len(inside)} YAML file{'s' if len(inside) != 1 else ''} "
                        f"in {path.name}/, a subdirectory (only the files of {directory} "
                        "itself are read); move them up into it, or out of it if unused",
                    )
                )
        elif _yaml_named(path) and path.suffix not in (".yaml", ".yml"):
            renamed = path.stem + path.suffix.lower()
            found.append(
                (
                    path,
                    f"not read: only names ending in .yaml or .yml (lower case) are; "
                    f"rename it {renamed}",
                )
            )
    return found


def _yaml_named(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


#: The most a configuration file may hold. The shipped ones are a few kilobytes; a file
#: this large (a log, a data dump given a .yaml name) would take ``check``, ``serve`` and
#: each reload minutes and gigabytes to compose and compile, so it is refused unread.
MAX_FILE_BYTES = 1024 * 1024


#: The warning for a file with no document in it (nothing, or only comments and ``---``):
#: read as such without a word, its endpoints were simply missing, and their senders got a
#: 404 with no hint (a wrong buffer saved, a paste that never happened).
EMPTY_FILE = (
    "the file defines nothing (it is empty, or holds only comments or ---), so no endpoint, "
    "mapping or target comes from it; write its documents in it (kind: endpoint, mapping or "
    "target, like the files in mappings/), or remove it"
)

#: A comment that is a document's ``kind:`` line, commented out.
_COMMENTED_KIND = re.compile(r"^[ \t]*#[ \t]*kind[ \t]*:", re.MULTILINE)


def _template(text: str) -> bool:
    """Whether ``text``, a file without documents, holds one commented out (``# kind:
    target``): a template kept on purpose (the shipped ``targets.yaml``) or a document
    disabled so, which is no mistake to warn about."""
    return _COMMENTED_KIND.search(text) is not None


def read_file(path: Path) -> tuple[str | None, int, str]:
    """The text of ``path``, or ``None``, the line of the problem and why it cannot be
    read, with the fix."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if path.is_symlink():
            return (
                None,
                1,
                (
                    f"the file is a symbolic link to {os.readlink(path)!r}, which does not exist; "
                    "point the link at the configuration file or remove it"
                ),
            )
        return None, 1, "the file went away while it was read; run again"
    except IsADirectoryError:
        return (
            None,
            1,
            (
                "this is a directory, not a file, so nothing in it is read (a container's "
                "bind mount of a file missing on the host makes one so); put the "
                "configuration file here in its place, or remove it"
            ),
        )
    except PermissionError:
        return (
            None,
            1,
            (
                f"the file cannot be read: permission denied; let the user running leadhub "
                f"read it (chmod a+r {path}) or move it out of the directory"
            ),
        )
    except OSError as exc:
        return (
            None,
            1,
            (
                f"the file cannot be read ({exc.strerror or exc}); fix it or move it out of "
                "the directory"
            ),
        )
    if len(data) > MAX_FILE_BYTES:
        return (
            None,
            1,
            (
                f"the file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB, far more than "
                "configuration needs (the examples are a few KiB); is it a configuration file? "
                "split it into several files or move it out of the directory"
            ),
        )
    try:
        return data.decode("utf-8"), 0, ""
    except UnicodeDecodeError as exc:
        return (
            None,
            data.count(b"\n", 0, exc.start) + 1,
            (
                f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                f"{exc.start}); save it as UTF-8"
            ),
        )


def _same_path(path: JsonPath) -> object:
    """What two paths that read the same value share: a plain chain of names and indexes by
    its steps (``$.form`` and ``$['form']`` alike, which two mappings copied from different
    examples write), any other path by the tree jsonpath-ng parses it into, so that spacing
    and quoting do not tell two alike apart (``[?(@.ref=='x')]``, ``[?(@.ref == "x")]``,
    ``[?(@['ref']=='x')]``: two mappings matching on those were not found to overlap)."""
    if isinstance(path, SimplePath):
        return ("steps", path.steps)
    return ("parsed", _parsed_tree(path.text))


@functools.lru_cache(maxsize=1024)
def _parsed_tree(text: str) -> str:
    """``text`` parsed by jsonpath-ng, written as its tree of nodes (names, filters and their
    literals exactly, ``Fields('a.b')`` apart from ``Fields('a'), Fields('b')``); the text
    itself when that cannot be had (a path nested too deeply for its ``repr``)."""
    try:
        return repr(parse_path(text))
    except Exception:  # (it compiled at load: a RecursionError of repr, say)
        return text


def _kind_left_out(node: Node) -> tuple[str, str] | None:
    """For a document without ``kind`` (so a mapping) that is an endpoint or a target with
    its ``kind:`` line left out, the key that tells and the kind meant; else ``None``.

    Read as a mapping, such a document gave an error for each of its keys ("unknown key
    'source' in mapping"), "needs 'endpoint'", "needs 'fields'", and one for every mapping
    of the endpoint it defines ("not defined"), none naming the line to add."""
    keys = node.value
    if "kind" in keys or "fields" in keys or "endpoint" in keys:
        return None
    if "source" in keys:
        return "source", "endpoint"
    for key in ("url", "access_key", "secret_key", "rate_limit"):
        if key in keys:
            return key, "target"
    return None


def _rule_implies(stronger: Rule, weaker: Rule) -> bool:
    """Whether ``stronger`` holding always makes ``weaker`` hold (decided statically)."""
    by_path = {_same_path(c.path): c.expected for c in stronger}
    for condition in weaker:
        expected = by_path.get(_same_path(condition.path))
        if expected is None or not expected <= condition.expected:
            return False
    return True


def _can_hold(rule: Rule) -> bool:
    """Whether ``rule`` may hold: not when a condition lists no value it holds for (one on
    blank text from a ``${VAR}`` left empty, which no value equals), so it takes no event and
    overlaps no other rule."""
    return all(condition.expected for condition in rule)


def overlap(a: CompiledMapping, b: CompiledMapping) -> Rule | None:
    """A rule under which both ``a`` and ``b`` take an event, when that is certain."""
    for rule_a in a.match or ((),):
        for rule_b in b.match or ((),):
            if not _can_hold(rule_a) or not _can_hold(rule_b):
                continue
            if _rule_implies(rule_b, rule_a):
                return rule_b
            if _rule_implies(rule_a, rule_b):
                return rule_a
    return None


def _written_order(mapping: CompiledMapping) -> tuple[str, int]:
    """Where ``mapping`` is written, as a sort key: by file, then line as a number."""
    origin = mapping.origin or Origin("", 0)
    return origin.file, origin.line


class _Collector:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.issues = Issues()
        self.targets: dict[str, Target] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.mappings: dict[str, CompiledMapping] = {}
        self.mapping_nodes: dict[str, Node] = {}
        #: Names of targets and endpoints written but left unusable by their errors: a
        #: mapping naming one gets no "not defined" error (a follow-on, and not so).
        self.unusable: dict[str, set[str]] = {"target": set(), "endpoint": set()}
        #: Endpoints named by a mapping its errors left unusable: such an endpoint gets no
        #: "has no mapping" warning (it has one, and its errors say what to fix).
        self.unusably_mapped: set[str] = set()
        #: Where each target's name is written, for the "no mapping sends to it" warning.
        self.target_lines: dict[str, tuple[str, int]] = {}
        #: Targets named by a mapping its errors left unusable (``default`` for one naming
        #: none), and whether some mapping's target could not be read at all (an unset
        #: ``${VAR}``): no target gets the "no mapping sends to it" warning on a guess.
        self.unusably_targeted: set[str] = set()
        self.target_unknown = False

    def _add(self, table: Mapping[str, Any], kind: str, name: str, node: Node) -> bool:
        if name in table:
            first = getattr(table[name], "origin", None)
            self.issues.error(
                node.file,
                node.key_lines.get("name", node.line),
                f"duplicate {kind} name {name!r} (first defined at {first}); rename one",
            )
            return False
        return True

    def document(self, node: Node) -> None:
        if not node.is_map():
            self.issues.error(
                node.file,
                node.line,
                "a document must be a mapping with a 'kind' (target, endpoint or mapping)",
            )
            return
        reader = Reader(node, self.issues, "document")
        meant = _kind_left_out(node)
        if meant is not None:
            key, kind = meant
            self.issues.error(
                node.file,
                node.line,
                f"this document has no 'kind', so it is read as a mapping, but its {key!r} is "
                f"a{'n' if kind == 'endpoint' else ''} {kind}'s; write kind: {kind} as its "
                "first line",
            )
            self._unusable(kind, reader)
            return
        kind = reader.text("kind", default="mapping")
        if kind not in KINDS:
            reader.error(
                reader.get("kind"),
                f"unknown kind {kind!r}{did_you_mean(str(kind), KINDS)}; "
                f"use one of: {', '.join(KINDS)}",
            )
            return
        if kind == "target":
            target = build_target(node, reader)
            if target is None:
                self._unusable("target", reader)
            elif self._add(self.targets, "target", target.name, node):
                self.targets[target.name] = target
                self.target_lines[target.name] = (node.file, node.key_lines.get("name", node.line))
        elif kind == "endpoint":
            endpoint = build_endpoint(node, reader)
            if endpoint is None:
                self._unusable("endpoint", reader)
            elif self._add(self.endpoints, "endpoint", endpoint.name, node):
                self.endpoints[endpoint.name] = endpoint
        else:
            mapping = build_mapping(node, reader)
            if mapping is None:
                endpoint_node = reader.get("endpoint")
                if endpoint_node is not None and isinstance(endpoint_node.value, str):
                    self.unusably_mapped.add(endpoint_node.value)
                target_node = reader.get("target")
                if target_node is None:
                    self.unusably_targeted.add("default")
                elif isinstance(target_node.value, str) and not target_node.reported:
                    self.unusably_targeted.add(target_node.value)
                else:
                    self.target_unknown = True
            elif self._add(
                self.mappings,
                "mapping",
                mapping.name,
                node,
            ):
                self.mappings[mapping.name] = mapping
                self.mapping_nodes[mapping.name] = node

    def _unusable(self, kind: str, reader: Reader) -> None:
        """Remember the name of a ``kind`` document its errors left unusable (reported).

        Not a name no document may have (``forms leads``): renaming the document to fix
        that error renames what refers to it too, so a mapping naming it is told now."""
        name = reader.get("name")
        if name is not None and isinstance(name.value, str) and url_safe(name.value):
            self.unusable[kind].add(name.value)

    def _line_of(self, mapping: CompiledMapping, key: str) -> tuple[str, int]:
        node = self.mapping_nodes[mapping.name]
        return node.file, node.key_lines.get(key, node.line)

    def _reported(self, mapping: CompiledMapping, key: str) -> bool:
        """Whether the mapping's ``key`` holds a value already reported (an unset ``${VAR}``)."""
        value = self.mapping_nodes[mapping.name].value.get(key)
        return isinstance(value, Node) and value.reported

    def _check_sandbox_attributes(self) -> None:
        """Warn about standard LeadSquared fields the embedded sandbox refuses (it knows fewer).

        A lead mapped with one of them is refused by the sandbox (400, so the event is dead),
        although a real LeadSquared account takes it.
        """
        sandboxed = [
            m for m in self.mappings.values() if (t := self.targets.get(m.target)) and t.sandbox
        ]
        if not sandboxed:
            return
        from hub.config.mappings import STANDARD_ATTRIBUTES
        from hub.sandbox.attributes import canonical_name

        for mapping in sandboxed:
            node = self.mapping_nodes[mapping.name]
            fields = node.value.get("fields") if isinstance(node.value, dict) else None
            for spec in mapping.fields:
                if spec.attribute.lower().startswith("mx_") or canonical_name(spec.attribute):
                    continue
                if spec.attribute not in STANDARD_ATTRIBUTES:
                    continue  # no LeadSquared field at all (a typo): warned at its line already
                line = fields.key_lines.get(spec.attribute, fields.line) if fields else node.line
                self.issues.warn(
                    node.file,
                    line,
                    f"attribute {spec.attribute!r} of mapping {mapping.name!r} is a LeadSquared "
                    f"field the embedded sandbox does not accept; target {mapping.target!r} is "
                    "the sandbox, so its leads will end dead there. Send it to a LeadSquared "
                    "account, or leave the field out while trying mappings on the sandbox",
                )

    def _check_unused_targets(self) -> None:
        """Warn about a target that no mapping sends to.

        Mappings send to the target they name, else to ``default``; a target named otherwise
        (``production``, ``Default``: names are case-sensitive) that no mapping names is never
        called. When ``default`` is then the embedded sandbox, every lead is captured there
        and shown ``delivered``, and nothing reaches the LeadSquared account the user set up.
        """
        if self.target_unknown or self.issues.unread:
            return  # a mapping's target is not known (or a file not read): it may be this one
        used = {m.target for m in self.mappings.values()} | self.unusably_targeted
        if any(self._reported(m, "target") for m in self.mappings.values()):
            return
        default = self.targets.get("default")
        for name, (file, line) in self.target_lines.items():
            if name in used or name == "default":
                continue
            message = f"target {name!r} is used by no mapping, so no lead is sent to it"
            if default is not None and default.sandbox and "default" in used:
                case = " (target names are case-sensitive)" if name.lower() == "default" else ""
                message += (
                    f"; a mapping that names no target sends to 'default', which is the "
                    f"embedded sandbox since no target is named default{case}, so its leads "
                    f"never reach LeadSquared. Name this target default, or write "
                    f"target: {name} in the mappings that should use it"
                )
            else:
                message += f"; write target: {name} in the mappings that should use it"
            self.issues.warn(file, line, message)

    def _written_targets(self) -> list[Target]:
        """The targets of LeadSquared accounts (the sandbox and unusable ones left out), in
        the order they are written."""
        return sorted(
            (t for t in self.targets.values() if t.url and t.access_key.reveal() and not t.sandbox),
            key=lambda t: (t.origin.file, t.origin.line) if t.origin else ("", 0),
        )

    def _check_shared_accounts(self) -> None:
        """Targets naming one LeadSquared account (its ``account:``, else its url and access
        key) share one rate
        window (``hub.dispatch.ratelimit.account_of``): given different ``rate_limit``s, each
        asks for the window under its own, and slots the other's turn freed go to either, so
        the lower limit is not kept (1/1s sent 2 to 4 calls a second beside a 5/1s target),
        and a target at ``off`` is not counted at all. A warning at each later target."""
        first: dict[tuple[str, str], Target] = {}
        for target in self._written_targets():
            account = target.account_identity()
            other = first.setdefault(account, target)
            if other is target or other.rate_limit == target.rate_limit:
                continue
            same = f"account: {target.account}" if target.account else "the same url and access_key"
            shared = (
                f"target {target.name!r} sends to the same LeadSquared account as target "
                f"{other.name!r} ({other.origin}: {same}), and their calls share one rate window"
            )
            off = [t.name for t in (target, other) if t.rate_limit is None]
            if off:
                why = (
                    f"but {off[0]!r} has rate_limit: off: its calls are not counted in it, "
                    "and the account refuses (429) what goes past its limit"
                )
            else:
                why = (
                    f"but their rate_limit differs ({_limit(target)} and {_limit(other)}): each "
                    "asks for room under its own, so the lower one is exceeded while the other "
                    "has calls waiting"
                )
            origin = target.origin or Origin("?", 0)
            self.issues.warn(
                origin.file, origin.line, f"{shared}, {why}; give both the account's limit"
            )

    def cross_check(self) -> None:
        # A default sandbox that cannot be made is its variable's error, not one more per
        # mapping that sends to it (as if no target named 'default' could be found).
        unmade: set[str] = set()
        if "default" not in self.targets:
            try:
                self.targets["default"] = sandbox_target(self.environ)
            except UnitError as exc:
                variable = "LEADHUB_SANDBOX_RATE_LIMIT"
                self.issues.error(variable, 0, f"{variable}: {exc}")
                unmade.add("default")
            except SandboxSettingError as exc:
                self.issues.error(exc.variable, 0, str(exc))
                unmade.add("default")
        for mapping in self.mappings.values():
            if (
                mapping.endpoint not in self.endpoints
                and mapping.endpoint not in self.unusable["endpoint"]
                and not self._reported(mapping, "endpoint")
            ):
                file, line = self._line_of(mapping, "endpoint")
                self.issues.error(
                    file,
                    line,
                    f"mapping {mapping.name!r} takes events of endpoint {mapping.endpoint!r}, "
                    f"which is not defined{did_you_mean(mapping.endpoint, self.endpoints)}; "
                    f"defined endpoints: {', '.join(sorted(self.endpoints)) or 'none'}",
                )
            if (
                mapping.target not in self.targets
                and mapping.target not in unmade
                and mapping.target not in self.unusable["target"]
                and not self._reported(mapping, "target")
            ):
                file, line = self._line_of(mapping, "target")
                self.issues.error(
                    file,
                    line,
                    f"mapping {mapping.name!r} sends to target {mapping.target!r}, which is not "
                    f"defined{did_you_mean(mapping.target, self.targets)}; "
                    f"defined targets: {', '.join(sorted(self.targets))}",
                )
        self._check_sandbox_attributes()
        self._check_unused_targets()

        self._check_shared_accounts()
        by_endpoint: dict[str, list[CompiledMapping]] = {}
        for mapping in sorted(self.mappings.values(), key=_written_order):
            by_endpoint.setdefault(mapping.endpoint, []).append(mapping)
        for endpoint in self.endpoints.values():
            # A file not read to its end may hold the mapping (after a syntax error, say).
            if (
                endpoint.name not in by_endpoint
                and endpoint.name not in self.unusably_mapped
                and not self.issues.unread
            ):
                origin = endpoint.origin or Origin("?", 0)
                self.issues.warn(
                    origin.file,
                    origin.line,
                    f"endpoint {endpoint.name!r} has no mapping; its events will be kept "
                    "as unmatched",
                )
        for mappings in by_endpoint.values():
            reported: set[str] = set()
            for first, second in combinations(mappings, 2):
                rule = overlap(first, second)
                if rule is None or second.name in reported:
                    continue
                reported.add(second.name)  # one overlap per mapping is enough to act on
                file, line = self._line_of(second, "match")
                when = f"when {describe_rule(rule)}" if rule else "(neither has a match)"
                self.issues.error(
                    file,
                    line,
                    f"mappings {first.name!r} ({first.origin}) and {second.name!r} both take "
                    f"every event of endpoint {second.endpoint!r} {when}; "
                    "give them match rules that exclude each other",
                )


def _limit(target: Target) -> str:
    return str(target.rate_limit) if target.rate_limit is not None else "off"


def load(directory: Path | str, environ: Mapping[str, str], *, stand_ins: bool = False) -> Config:
    """Load and validate every file in ``directory``, expanding ``${VAR}`` from ``environ``.

    ``stand_ins=True`` replaces an unset variable by ``unset-NAME`` instead of reporting it:
    for ``leadhub try``, which maps documents and never verifies or sends anything.

    Raises:
        ConfigError: with every problem found, each as ``file:line: message``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        msg = f"{directory}: not a directory; pass the configuration directory (like mappings/)"
        raise ConfigError([msg])
    if not os.access(directory, os.R_OK | os.X_OK):  # listing it would find nothing
        msg = (
            f"{directory}: the directory cannot be read: permission denied; let the user "
            f"running leadhub list and read it (chmod a+rx {directory})"
        )
        raise ConfigError([msg])
    files = config_files(directory)
    collector = _Collector(environ)
    for path, why in passed_over(directory):
        collector.issues.warn(str(path), 1, why)
    if not files:
        msg = f"{directory}: holds no *.yaml or *.yml files; is it the right directory?"
        raise ConfigError([msg], warnings=collector.issues.warning_lines())
    for path in files:
        shown = str(path)
        text, line, problem = read_file(path)
        if text is None:
            collector.issues.error(shown, line, problem)
            collector.issues.unread.add(shown)
            continue
        documents = 0
        for node in read_documents(
            text, shown, environ, collector.issues, stand_ins=stand_ins, belongs=key_belongs
        ):
            documents += 1
            collector.document(node)
        if not documents and shown not in collector.issues.unread and not _template(text):
            collector.issues.warn(shown, 1, EMPTY_FILE)
    collector.cross_check()
    warnings = tuple(collector.issues.warning_lines())
    if collector.issues.errors:
        raise ConfigError(collector.issues.error_lines(), warnings=warnings)
    return Config(
        directory=directory,
        targets=dict(collector.targets),
        endpoints=dict(collector.endpoints),
        mappings=dict(sorted(collector.mappings.items())),
        warnings=warnings,
    )
