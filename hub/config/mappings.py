"""``kind: mapping`` documents into :class:`hub.mapping.CompiledMapping` objects.

Every JSONPath is compiled and every transform parsed here, once, so that a
mistake is a ``check`` error with its line rather than a failure at dispatch.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from hub.config.endpoints import UnionInPath, check_name, checked_path
from hub.config.issues import did_you_mean
from hub.config.models import JsonPath, Origin
from hub.config.nodes import Node
from hub.config.reader import Reader, type_name
from hub.mapping.engine import field_value
from hub.mapping.model import (
    CONSENT_MAP,
    OPT_OUT_MAP,
    OPT_OUT_VALUES,
    OPT_OUTS,
    UPDATE_BEHAVIORS,
    CompiledMapping,
    Condition,
    FieldSpec,
    Rule,
)
from hub.mapping.paths import PathError
from hub.mapping.transforms import Context, Transform, TransformError, parse_transforms
from hub.mapping.values import is_blank, shown_text, to_text

MAPPING_KEYS = (
    "kind",
    "name",
    "endpoint",
    "target",
    "match",
    "skip_if",
    "search_by",
    "update_behavior",
    "default_region",
    "fields",
)
FIELD_KEYS = ("path", "value", "transform", "default", "required")
#: LeadSquared's standard lead attributes; anything else must be an ``mx_`` custom field.
STANDARD_ATTRIBUTES = (
    "ProspectID",
    "ProspectId",
    "FirstName",
    "LastName",
    "EmailAddress",
    "Phone",
    "Mobile",
    "Company",
    "JobTitle",
    "Website",
    "Fax",
    "Notes",
    "Source",
    "SourceMedium",
    "SourceCampaign",
    "SourceContent",
    "SourceReferrer",
    "SourceIPAddress",
    "Origin",
    "ProspectStage",
    "OwnerId",
    "Score",
    "Revenue",
    "DoNotEmail",
    "DoNotCall",
    "DoNotSMS",
    "DoNotTrack",
    "RelatedCompanyId",
    "LeadType",
)
SEARCH_BY = ("EmailAddress", "Phone")
#: How a flag written as a word reads, for the fix of a constant or a map output sent to an
#: opt-out flag.
_YES_NO = {
    "true": "1",
    "yes": "1",
    "y": "1",
    "on": "1",
    "false": "0",
    "no": "0",
    "n": "0",
    "off": "0",
}


#: What an empty ``match`` / ``skip_if`` would mean, and so what removing it does.
_EMPTY_MEANS = {"match": "take every event", "skip_if": "skip no event"}


def _empty(node: Node, r: Reader, key: str, *, in_list: bool) -> None:
    """``match: []``, ``match: {}`` or a ``{}`` rule in a list (``skip_if`` alike): an error
    saying what it would mean and how to write it. None holds a condition, yet each decides:
    ``[]`` would take every event (``skip_if``: skip none), a ``{}`` rule would hold for every
    event. (``[]`` was taken so, silently; ``{}`` was refused as no rule.) Absent or null is
    no rule, as documented."""
    example = "{$.form_id: abc123}"
    if in_list:
        message = (
            f"a rule in {key} of {r.what} is {{}}, which holds no condition (so it holds for "
            f"every event); remove it, or write its conditions like {example}"
        )
    else:
        written, holds, what = (
            ("[]", "no rule", "rules") if node.value == [] else ("{}", "no condition", "conditions")
        )
        message = (
            f"{key}: {written} of {r.what} holds {holds}; remove it to {_EMPTY_MEANS[key]}, "
            f"or add {what} like {key}: {example}"
        )
    r.error(node, message)


def _rule(node: Node, r: Reader, key: str, *, in_list: bool) -> Rule | None:
    if node.is_map() and not node.value:
        _empty(node, r, key, in_list=in_list)
        return None
    if not node.is_map():
        r.error(
            node,
            f"each rule in {key!r} is a mapping of JSONPath to value, like {{$.form_id: abc123}}",
        )
        return None
    conditions = []
    for path_text, value_node in node.value.items():
        line = node.key_lines.get(path_text, node.line)
        if "${" in path_text:
            r.issues.error(
                node.file,
                line,
                f"{key} of {r.what}: {path_text!r} is a key, and ${{VAR}} is replaced in values "
                "only; write the JSONPath itself, like $.form_response.form_id",
            )
            continue
        try:
            path = checked_path(path_text)
        except PathError as exc:
            r.issues.error(node.file, line, f"{key} of {r.what}: {exc}")
            continue
        raw = value_node.plain()
        options = raw if isinstance(raw, list) else [raw]
        if any(isinstance(o, dict | list) for o in options):
            r.error(
                value_node,
                f"{key} of {r.what}: {path_text} must equal text, a number, "
                "true/false, null or a list of those",
            )
            continue
        items = value_node.value if isinstance(value_node.value, list) else [value_node]
        shown = [
            f"{o!r} (from {n.raw})" if n.expanded else repr(o)
            for o, n in zip(options, items, strict=True)
        ]
        expanded = [n.expanded for n in items]
        never = _never_equal(options, expanded, shown, path_text, key)
        if never is not None:
            at, why, refused = never
            where = items[at] if items else value_node
            if refused:
                r.error(where, f"{key} of {r.what}: {why}")
                continue
            r.warn(where, f"{key} of {r.what}: {why}")
        # blank text never equals (blank counts as absent): left out, so that the overlap
        # check does not take it for a value the condition holds for
        expected = frozenset(
            None if o is None else to_text(o)
            for o in options
            if not (isinstance(o, str) and is_blank(o))
        )
        conditions.append(Condition(path=path, expected=expected))
    return tuple(conditions)


def _never_equal(
    options: list[Any], expanded: list[bool], shown: list[str], path_text: str, key: str
) -> tuple[int, str, bool] | None:
    """Which of a condition's ``options`` (its index; ``expanded``: whether each came from a
    ``${VAR}``; ``shown`` as written) names a value no document gives, why, and whether that
    is an error, else ``None``. An empty list (``$.tag: []``, any of no values) or blank text
    alone (``$.utm: ""``: blank counts as absent, before comparing) is an error: such a
    condition never held, silently (a ``match`` that took no event, a ``skip_if`` that skipped
    none). Blank text among other options (``[null, ""]``) is dead weight, a warning. Blank
    text from a ``${VAR}`` is meant (an optional setting, ``${UTM:}``, left empty): no error;
    a warning under ``match`` (its mapping takes no event by it), nothing under ``skip_if``
    (skipping no event is what leaving it empty means)."""
    if not options:
        return (
            0,
            (
                f"{path_text}: [] lists no value, so the condition never holds; list the values "
                f"it may equal, like {path_text}: [a, b], or write null for absent"
            ),
            True,
        )
    blank = [at for at, o in enumerate(options) if isinstance(o, str) and is_blank(o)]
    literal = [at for at in blank if not expanded[at]]
    if len(blank) < len(options):
        if not literal:
            return None
        return (
            literal[0],
            (
                f"{path_text} lists {shown[literal[0]]}, which no value equals (blank counts as "
                "absent); remove it, or write null for absent or blank"
            ),
            False,
        )
    at = literal[0] if literal else 0
    said = shown[at] if len(options) == 1 else f"only blank text ({', '.join(shown)})"
    why = (
        f"{path_text} equals {said}, which no value does (blank counts as absent), so the "
        "condition never holds"
    )
    if literal:
        return at, f"{why}; write null for absent or blank", True
    if key == "skip_if":
        return None
    return at, f"{why}; set the variable to the value to match, or write null for absent", False


def _rules(r: Reader, key: str) -> tuple[Rule, ...]:
    """``{path: value, ...}`` (all hold) or a list of those (any one holds)."""
    node = r.get(key)
    if node is None or node.value is None:
        return ()
    if node.value == []:
        _empty(node, r, key, in_list=False)
        return ()
    in_list = isinstance(node.value, list)
    items = node.value if in_list else [node]
    rules = []
    for item in items:
        rule = _rule(item, r, key, in_list=in_list)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


#: A field's paths tried in order, for its errors.
_PATHS_EXAMPLE = "[$.lead.email, $.email]"
#: Characters that end a plain YAML scalar inside [...] (a path holding one is quoted).
_FLOW = set("[]{},#:'\"")


def _listed(node: Node) -> str:
    """The items of a list written as a field, as they go in ``{path: [...]}``: each path
    quoted when it holds what ends a plain YAML scalar in a list; the example when an item
    is no text."""
    items = node.plain()
    if not items or not all(isinstance(item, str) for item in items):
        return _PATHS_EXAMPLE.strip("[]")
    return ", ".join(
        json.dumps(item, ensure_ascii=False) if _FLOW & set(item) else item for item in items
    )


def _field_path(text: str) -> JsonPath:
    """``text`` as :func:`checked_path` takes it; a ``|`` meant as "else" is told of the
    list of paths, which does that in a field (nowhere else).

    Raises:
        PathError: the path does not compile, or holds such a union.
    """
    try:
        return checked_path(text)
    except UnionInPath as exc:
        msg = (
            f"{exc}; to read the first of several paths that gives a value, list them: "
            f"{{path: {_PATHS_EXAMPLE}}}"
        )
        raise PathError(msg) from None


def _paths(node: Node, r: Reader, where: str) -> tuple[JsonPath, ...] | None:
    """A field's ``path``: one JSONPath, or a list of them, tried in order (the engine reads
    the first that gives a value). Each item is checked as one path is, and its error is at
    its own line; ``None`` once any is reported, so no field reads fewer paths than written.
    """
    if not isinstance(node.value, list):
        text = r.text("path")
        if text is None:
            return None  # not text: reported
        try:
            return (_field_path(text),)
        except PathError as exc:
            r.error(node, f"{where}: {exc}")
            return None
    if not node.value:
        r.error(
            node,
            f"'path' of {where} is an empty list, which names no path; write one JSONPath, "
            f"like $.email, or the paths to try in order, like {_PATHS_EXAMPLE}",
        )
        return None
    paths: list[JsonPath] = []
    first_at: dict[str, int] = {}
    for number, item in enumerate(node.value, start=1):
        what = f"path {number} of {where}"
        if not isinstance(item.value, str):
            r.error(
                item,
                f"{what} is {type_name(item.value)}; each item of the list is a JSONPath in "
                f"text, like {_PATHS_EXAMPLE}",
            )
            continue
        try:
            paths.append(_field_path(item.value))
        except PathError as exc:
            r.error(item, f"{what}: {exc}")
            continue
        if item.value in first_at:
            r.warn(
                item,
                f"{what} is path {first_at[item.value]} again, {item.value!r}: it never gives "
                "a value the first did not; remove it",
            )
        first_at.setdefault(item.value, number)
    if len(paths) < len(node.value):
        return None  # each unusable path reported
    return tuple(paths)


def _opt_out_constant(
    attribute: str,
    key: str,
    node: Node | None,
    r: Reader,
    where: str,
    transforms: tuple[Transform, ...] = (),
) -> None:
    """Warn when the constant ``key`` (``value`` or ``default``) of an opt-out flag does not
    send "0" or "1", the flag's values in LeadSquared. ``DoNotEmail: {value: yes}`` sent
    "yes" and ``{value: true}`` "true": what LeadSquared makes of those is not documented,
    and the sandbox takes any text, so nothing said so before the leads reached a real
    account. A ``value`` passes through the field's ``transforms`` before it is sent (a
    ``default`` does not), so what they make of it is judged (:func:`_constant_sent`):
    ``{value: true, transform: {map: {true: "1"}}}`` sends "1", and ``{value: "1",
    transform: {map: {"1": "yes"}}}`` "yes"."""
    if node is None or node.value is None or node.reported or isinstance(node.value, dict | list):
        return
    written = to_text(node.value)
    sent: str | None = written
    if transforms:
        sent = _constant_sent(attribute, node.value, transforms, written)
    if sent is None or sent in ("0", "1"):
        return  # (None: nothing sent from it, the default or no attribute instead)
    meaning = OPT_OUTS[attribute]
    known = _YES_NO.get(sent.strip().lower())
    sends = repr(sent)
    if node.expanded:
        fix = f"set what {node.raw} gives to 1 ({meaning}) or 0"
    elif known:
        fix = f'write {key}: "{known}"'
    else:
        fix = f'write {key}: "1" ({meaning}) or {key}: "0"'
    if sent != written:
        sends += f", which its transforms make of {written!r}"
        fix = f"a constant needs no transform: drop them and {fix}"
    r.warn(
        node,
        f'{key!r} of {where} sends {sends}; LeadSquared\'s {attribute} takes "1" '
        f'({meaning}) or "0": {fix}',
    )


def _constant_sent(
    attribute: str, value: Any, transforms: tuple[Transform, ...], written: str
) -> str | None:
    """What the constant ``value`` of opt-out flag ``attribute`` sends once ``transforms``
    are applied, as the engine applies them (``field_value``, which reads no document for a
    constant), or ``None`` when it sends nothing (its transforms leave it out). When a
    transform cannot take it (a warning: ``phone`` or ``date`` left it out, maybe for want
    of the mapping's ``default_region``), what is sent is not known here: the value as
    ``written``, as before."""
    ctx = Context(attribute=attribute, default_region=None)
    spec = FieldSpec(attribute=attribute, value=value, transforms=transforms)
    sent = field_value(spec, None, ctx)
    return written if ctx.warnings else sent


#: At most this many of a map's outputs are named in an opt-out flag's warning.
_OUTPUTS_LISTED = 3


def _opt_out_path(
    attribute: str, transforms: tuple[Transform, ...], node: Node, r: Reader, where: str
) -> None:
    """Warn when opt-out flag ``attribute`` reads a path and its transforms cannot be known
    to give only "0" or "1": none of them, or a last one other than ``map``. What a sender
    gives is sent as it is (a Typeform yes/no answer, JSON true, as "true"), and the hub
    cannot turn it into the flag itself: a consent question's true means "0". The sandbox
    takes any text, so nothing said so before the leads reached a real account."""
    meaning = OPT_OUTS[attribute]
    takes = f'LeadSquared\'s {attribute} takes "1" ({meaning}) or "0"'
    inverse = f"(or the inverse, {CONSENT_MAP}, when the question asks for consent)"
    last = transforms[-1] if transforms else None
    if last is None:
        r.warn(
            node,
            f'{where} sends what its path finds as it is (a JSON true as "true"); {takes}: '
            f"add transform: {OPT_OUT_MAP} {inverse}",
        )
    elif last.name != "map":
        r.warn(
            node,
            f'{where} ends its transforms with {last.name}, which may give more than "1" and '
            f'"0"; {takes}: end them with a map to those, like {OPT_OUT_MAP} {inverse}',
        )
    else:
        _opt_out_map(attribute, last.arg, node, r, where)


def _opt_out_map(attribute: str, table: dict[str, str], node: Node, r: Reader, where: str) -> None:
    """Warn when the last ``map`` of opt-out flag ``attribute`` gives something else than
    "0" or "1", naming each such output and what to write instead (an empty output leaves
    the value out, and is not one)."""
    outputs = list(dict.fromkeys(v for v in table.values() if v and v not in OPT_OUT_VALUES))
    if not outputs:
        return
    meaning = OPT_OUTS[attribute]
    fixes = []
    for output in outputs[:_OUTPUTS_LISTED]:
        known = _YES_NO.get(output.strip().lower())
        wanted = f'"{known}"' if known else f'"1" ({meaning}) or "0"'
        fixes.append(f"{wanted} instead of {shown_text(output)!r}")
    named = [repr(shown_text(o)) for o in outputs[:_OUTPUTS_LISTED]]
    more = len(outputs) - _OUTPUTS_LISTED
    if more > 0:
        named.append(f"{more} more")
        fixes.append("and alike for the others")
    shown = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
    r.warn(
        node,
        f'the map of {where} sends {shown}; LeadSquared\'s {attribute} takes "1" ({meaning}) '
        f'or "0": in the map, write {", ".join(fixes)}',
    )


def _field(attribute: str, node: Node, r: Reader) -> FieldSpec | None:
    where = f"field {attribute!r} of {r.what}"
    if isinstance(node.value, str):
        try:
            path = checked_path(node.value)
        except PathError as exc:
            r.error(node, f"{where}: {exc}")
            return None
        if attribute in OPT_OUTS:
            _opt_out_path(attribute, (), node, r, where)
        return FieldSpec(attribute=attribute, path=path)
    if isinstance(node.value, list):
        # (node.value holds Nodes: to_text of it raised TypeError, a traceback from check)
        r.error(
            node,
            f"{where} is a list, which a field does not take as it stands (the first path's "
            "value, or all their values?); for the first of these paths that gives a value "
            f"write {{path: [{_listed(node)}]}}, for the first of several members of one "
            "object $.lead['work_email','email'], and for several values in one attribute "
            "{path: $.tags[*], transform: join(, )}",
        )
        return None
    if not node.is_map():
        r.error(
            node,
            f"{where} is {type_name(node.value)}; write a JSONPath like $.email, "
            f"or {{value: {to_text(node.value) or 'Typeform'}}} for a constant",
        )
        return None
    sub = Reader(node, r.issues, where)
    sub.check_keys(FIELD_KEYS)
    path_node = sub.get("path")
    has_path = path_node is not None and path_node.value is not None
    value_node = sub.get("value")
    if has_path == (value_node is not None):
        sub.error(None, f"{where} needs exactly one of 'path' (a JSONPath) or 'value' (a constant)")
        return None
    paths: tuple[JsonPath, ...] = ()
    if path_node is not None and has_path:
        checked = _paths(path_node, sub, where)
        if checked is None:
            return None  # reported (not as a missing path, which it is not)
        paths = checked
    value = None
    if value_node is not None:
        value = value_node.value
        if value is None:
            # {value: } sent nothing for every event, silently, where a field written as
            # nothing (EmailAddress:) is refused.
            sub.error(
                value_node,
                f"'value' of {where} is nothing, so the field never sends anything; write "
                "the constant, like {value: Typeform}, or remove the field",
            )
            return None
        if isinstance(value, dict | list):
            sub.error(value_node, f"'value' of {where} must be text, a number or true/false")
            return None
        _blank_constant(value_node, sub, where, "value")
    transforms: tuple[Transform, ...] = ()
    transform_node = sub.get("transform")
    if transform_node is not None:
        try:
            transforms = parse_transforms(transform_node.plain())
        except TransformError as exc:
            sub.error(transform_node, f"{where}: {exc}")
            return None
    default_node = sub.get("default")
    default = None
    blank_default = False
    if default_node is not None and default_node.value is not None:
        if isinstance(default_node.value, dict | list):
            sub.error(default_node, f"'default' of {where} must be text or a number")
        elif is_blank(to_text(default_node.value)):
            # Blank counts as absent: a blank default was sent as the value, so a required
            # field given it never failed, and a lead went out with an empty EmailAddress.
            _blank_constant(default_node, sub, where, "default")
            blank_default = True
        else:
            default = to_text(default_node.value)
    constant = value is not None and not is_blank(to_text(value))
    _never_fails(sub, where, always=constant or default is not None)
    if attribute == "RelatedCompanyId" and not transforms:
        _account_id_constant(value_node, sub, where, "value")
        _account_id_constant(default_node, sub, where, "default")
    if attribute in OPT_OUTS:
        _opt_out_constant(attribute, "value", value_node, sub, where, transforms)
        if not blank_default:  # (sends nothing: said above)
            _opt_out_constant(attribute, "default", default_node, sub, where)
        if path_node is not None and paths:
            _opt_out_path(attribute, transforms, transform_node or path_node, sub, where)
    return FieldSpec(
        attribute=attribute,
        path=paths[0] if paths else None,
        fallbacks=paths[1:],
        value=value,
        transforms=transforms,
        default=default,
        required=sub.flag("required", False),
    )


#: An account's id, as LeadSquared gives it (``Company.Create``'s ``Message.Id``).
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_ACCOUNT_ID_EXAMPLE = "8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11"


def _account_id_constant(node: Node | None, r: Reader, where: str, key: str) -> None:
    """Warn when the constant ``key`` of ``RelatedCompanyId`` is no account id (a GUID):
    an account's name written there (``{value: Acme}``) was taken silently, and every lead
    the mapping sent was refused (``MXInvalidInputException``: no such account), dead."""
    if node is None or node.value is None or node.reported or node.stand_in:
        return
    if isinstance(node.value, dict | list) or is_blank(to_text(node.value)):
        return  # (said elsewhere)
    text = to_text(node.value).strip()
    if _GUID.fullmatch(text):
        return
    written = f"what {node.raw} gives" if node.expanded else "it"
    r.warn(
        node,
        f"{key!r} of {where} is {shown_text(text)!r}, which is no account id: LeadSquared "
        "links the lead to the account whose id (a GUID, like "
        f"{_ACCOUNT_ID_EXAMPLE}) it is given and refuses every lead naming one it does not "
        f"hold (MXInvalidInputException); set {written} to the account's id (on the embedded "
        "sandbox, the Id that POST /_sandbox/accounts answers)",
    )


def _never_fails(r: Reader, where: str, *, always: bool) -> None:
    """Warn of ``required: true`` on a field that always has a value (a ``value``, or a
    ``default`` sent when its paths find none): it can never fail, which a reader of the file
    would not guess (the document it was meant to refuse goes out with the constant)."""
    required = r.get("required")
    if not always or required is None or required.value is not True:
        return
    which = "'value'" if r.get("value") is not None else "'default'"
    r.warn(
        required,
        f"'required' of {where} never fails: its {which} is sent when nothing else is; "
        f"remove 'required', or the {which} to have a document without the value fail",
    )


def _blank_constant(node: Node, r: Reader, where: str, key: str) -> None:
    """Warn of a ``value`` or ``default`` written blank (``default: ""``) in the field ``r``
    reads: blank counts as absent, so it sends nothing (a default then leaves the attribute
    out, or fails a required field). One from a ``${VAR}`` is not warned of: an optional setting
    (``${OWNER:}``) left empty is meant to send nothing."""
    if node.expanded or not isinstance(node.value, str) or not is_blank(node.value):
        return
    required = r.get("required")
    if key == "value":
        means = "the field never sends anything"
    elif required is not None and required.value is True:
        means = "it is no default: a document without the value fails, as the field is required"
    else:
        means = "it is no default: the attribute is left out when the path finds no value"
    r.warn(
        node,
        f"{key!r} of {where} is blank, and blank counts as absent, so {means}; "
        f"write the text to send, or remove the {key!r}",
    )


def _fields(r: Reader) -> tuple[FieldSpec, ...]:
    node = r.required("fields")
    if node is None:
        return ()
    if not node.is_map() or not node.value:
        r.error(
            node,
            f"'fields' of {r.what} maps Lead.Capture attributes to values, like "
            "{EmailAddress: $.email}",
        )
        return ()
    specs = []
    previous: str | None = None
    for attribute, value_node in node.value.items():
        line = node.key_lines.get(attribute, node.line)
        if attribute in FIELD_KEYS:
            # Indented as deep as the attributes: meant for the field above it, whose
            # value it is missing (or, first of all, for a field not written yet).
            above = repr(previous) if previous else "the attribute it is for"
            r.issues.error(
                node.file,
                line,
                f"{attribute!r} in 'fields' of {r.what} is a key of a field, not a "
                f"LeadSquared attribute; indent it under {above}, as deep as that field's "
                "'path'",
            )
            continue
        previous = attribute
        if "${" in attribute:
            # ${VAR} is replaced in values only: the attribute was sent as written
            # ("${LSQ_FIELD}", refused with every lead), after a warning that it is no
            # standard field (or an error giving a custom field name, mx_${X} as mx_X).
            r.issues.error(
                node.file,
                line,
                f"attribute {attribute!r} in 'fields' of {r.what} is a key, and ${{VAR}} is "
                "replaced in values only (it would be sent as written, and every lead "
                "refused); write the LeadSquared attribute itself, like mx_City",
            )
            continue
        if not attribute.strip():
            r.issues.error(
                node.file,
                line,
                f"an attribute name in 'fields' of {r.what} is empty; "
                "write the LeadSquared attribute, like EmailAddress or mx_City",
            )
            continue
        if _unverified_name(attribute):
            r.issues.warn(
                node.file,
                line,
                f"attribute {attribute!r} of {r.what} holds letters or digits outside ASCII "
                f"({_non_ascii(attribute)}); whether LeadSquared takes them in a custom field's "
                "schema name is not known (its own are mx_ then ASCII letters, digits and _): "
                "check the field's schema name in LeadSquared and write it as it is there",
            )
        elif attribute[:3].lower() == "mx_" and not _CUSTOM_NAME.fullmatch(attribute):
            r.issues.error(
                node.file,
                line,
                f"attribute {attribute!r} of {r.what} is no custom field name LeadSquared "
                "takes (every lead would be refused): mx_ then letters, digits and _ only, "
                f"the field's schema name, like {_custom_name(attribute)!r}, not its display "
                "name",
            )
            continue
        if attribute.lower() == "searchby":
            r.issues.warn(node.file, line, _search_by_as_field(attribute, r.what))
        elif attribute not in STANDARD_ATTRIBUTES and not attribute.startswith("mx_"):
            r.issues.warn(
                node.file,
                line,
                f"attribute {attribute!r} of {r.what} is not a standard LeadSquared field"
                f"{did_you_mean(attribute, STANDARD_ATTRIBUTES)}; custom fields start with mx_",
            )
        spec = _field(attribute, value_node, r)
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def _spelt_otherwise(search_by: str, fields: tuple[FieldSpec, ...]) -> str | None:
    """The attribute among ``fields`` that ``search_by`` names in other letter case
    (``emailaddress`` for ``EmailAddress``), when none is spelt as it is; else None."""
    if any(spec.attribute == search_by for spec in fields):
        return None
    wanted = search_by.lower()
    return next((spec.attribute for spec in fields if spec.attribute.lower() == wanted), None)


def _search_by_as_field(attribute: str, what: str) -> str:
    """The warning for ``SearchBy`` written among a mapping's fields, with the fix.

    It was "not a standard LeadSquared field; custom fields start with mx_", which points
    away from the fix: it is LeadSquared's pseudo-attribute, which ``search_by`` sends only
    when the body holds the attribute it names. As a field it is sent whatever the body
    holds (a lead without that attribute is refused, ``MXInvalidInputException``), and with
    ``search_by`` as well the body holds two SearchBy items.
    """
    return (
        f"{attribute!r} in 'fields' of {what} is not a lead field but how LeadSquared looks "
        "the lead up: write search_by: EmailAddress (or Phone) at the mapping's level "
        "instead, which sends SearchBy only when the body holds that attribute (a SearchBy "
        "naming one the body lacks is refused: MXInvalidInputException on the sandbox) and never "
        "twice"
    )


#: A custom field's schema name in ASCII, as LeadSquared's own are; the sandbox takes letters
#: and digits outside ASCII as well (``is_custom_name`` in ``hub/sandbox/attributes.py``),
#: which :func:`_unverified_name` warns of.
_CUSTOM_NAME = re.compile(r"mx_\w+", re.IGNORECASE | re.ASCII)


def _unverified_name(attribute: str) -> bool:
    """Whether ``attribute`` would be a custom field name but for letters or digits outside
    ASCII (``mx_Città``, ``mx_शहर``; a script's combining marks, such as Devanagari's vowel
    signs, count as letters): LeadSquared's rule for those is not known, so it is a warning,
    not an error. Spaces, hyphens and other punctuation, ASCII or not, stay errors."""
    rest = attribute[3:]
    return (
        attribute[:3].lower() == "mx_"
        and any(not char.isascii() for char in rest)
        and all(
            _CUSTOM_NAME.fullmatch("mx_" + char)
            or (not char.isascii() and unicodedata.category(char)[0] in "LNM")
            for char in rest
        )
    )


def _non_ascii(attribute: str) -> str:
    """The characters of ``attribute`` outside ASCII, each once, for the warning."""
    return ", ".join(dict.fromkeys(char for char in attribute if not char.isascii()))


def _custom_name(attribute: str) -> str:
    """``attribute`` (``mx_Budget ``, ``mx_Lead Score``) as a name a custom field can have:
    its other characters as ``_``, for the fix."""
    rest = re.sub(r"\W+", "_", attribute[3:].strip(), flags=re.ASCII).strip("_")
    return "mx_" + (rest or "City")


def _misplaced(key: str) -> str | None:
    """Where a key written at a mapping's level belongs, when it is a field's key or a
    LeadSquared attribute (an indentation too short, or ``fields:`` left out)."""
    if key in FIELD_KEYS:
        return (
            f"{key!r} is a key of a field: indent it under the attribute it is for in "
            "'fields', as deep as that field's 'path'"
        )
    if key in STANDARD_ATTRIBUTES or key.startswith("mx_"):
        return f"{key!r} is a LeadSquared attribute: indent it under 'fields:'"
    return None


def build_mapping(node: Node, r: Reader) -> CompiledMapping | None:
    """A :class:`CompiledMapping` from a mapping document, or ``None`` when unusable."""
    name = check_name(r, "mapping")
    r.check_keys(MAPPING_KEYS, _misplaced)
    endpoint = r.text("endpoint", required=True)
    target = r.text("target", default="default")
    fields = _fields(r)
    errors = len(r.issues.errors)
    match = _rules(r, "match")
    skip_if = _rules(r, "skip_if")
    # A rule left out for its error would make the mapping take events it should not (and
    # "neither has a match" overlaps follow): the mapping is not used, its errors said.
    rules_failed = len(r.issues.errors) > errors
    update_behavior = r.choice("update_behavior", UPDATE_BEHAVIORS, None)
    search_by = r.text("search_by")
    if search_by is not None:
        spelt = _spelt_otherwise(search_by, fields)
        if spelt is not None:
            # "not among its fields; map that attribute too" sent the user to add a second
            # EmailAddress field (as emailaddress) beside the one mapped.
            r.error(
                r.get("search_by"),
                f"search_by {search_by!r} of {r.what} names its field {spelt!r} in other "
                f"letter case; write search_by: {spelt}, as the field is written",
            )
        elif not any(spec.attribute == search_by for spec in fields):
            r.error(
                r.get("search_by"),
                f"search_by {search_by!r} of {r.what} is not among its "
                "fields; map that attribute too, LeadSquared searches by its value",
            )
        elif search_by not in SEARCH_BY:
            r.warn(
                r.get("search_by"),
                f"search_by {search_by!r}: LeadSquared documents only "
                "EmailAddress and Phone (or a unique custom field)",
            )
    region = r.text("default_region")
    if region is not None:
        region = str(region).upper()
        import phonenumbers  # (here: only a mapping naming a region loads it)

        if region not in phonenumbers.SUPPORTED_REGIONS:
            fix = (
                "write GB, the United Kingdom's code (ISO 3166)"
                if region == "UK"
                else "use two letters like IN, US or GB"
            )
            r.error(
                r.get("default_region"), f"default_region {region!r} is not a region code; {fix}"
            )
            region = None
    if name is None or endpoint is None or rules_failed:
        return None
    return CompiledMapping(
        name=name,
        endpoint=str(endpoint),
        target=str(target),
        fields=fields,
        match=match,
        skip_if=skip_if,
        search_by=search_by,
        update_behavior=update_behavior,
        default_region=region,
        origin=Origin(node.file, node.line),
    )
