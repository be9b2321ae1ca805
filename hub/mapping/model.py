"""Compiled mappings and the four outcomes of mapping a document.

A :class:`CompiledMapping` is built once at load by ``hub.config`` (every
JSONPath compiled, every transform parsed) and is immutable. Mapping a document
(``hub.mapping.engine``) gives exactly one of :class:`CaptureRequest` (send it),
:class:`Skip` (``skip_if`` held), :class:`Unmatched` (no mapping takes it) or
:class:`MappingError` (it cannot be mapped, e.g. a ``required`` field is missing, or
the document cannot be evaluated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hub.mapping.transforms import Transform
from hub.mapping.values import INVISIBLE, present, to_text

if TYPE_CHECKING:  # hub.config imports this module; importing it back would be circular
    from hub.config.models import JsonPath, Origin

#: LeadUpdateBehavior values LeadSquared documents ("None" equals leaving it out).
UPDATE_BEHAVIORS = ("DoNotUpdate", "UpdateOnlyEmptyFields", "DoNotUpdateUniqueFields", "None")
#: LeadSquared's opt-out flags, each taking "1" (the lead opted out) or "0"
#: (``leadsquared-facts.md`` section 5), with what "1" means.
OPT_OUTS = {
    "DoNotEmail": "do not email",
    "DoNotCall": "do not call",
    "DoNotSMS": "do not text",
    "DoNotTrack": "do not track",
}
#: The values an opt-out flag takes.
OPT_OUT_VALUES = ("0", "1")
#: The transform that turns a yes/no answer (a JSON true or false) into an opt-out flag's
#: value, as a mapping file writes it (``map({...})`` unquoted is no YAML there: ``: ``), and
#: its inverse, for a question that asks for consent (ticked: the lead may be emailed).
OPT_OUT_MAP = '{map: {true: "1", false: "0"}}'
CONSENT_MAP = '{map: {true: "0", false: "1"}}'


@dataclass(frozen=True, slots=True)
class Condition:
    """``path: expected``: holds when a value the path finds equals one of ``expected``.

    Values compare as their string form (so ``true`` matches JSON ``true`` and
    ``"true"``, ``1`` matches ``1`` and ``"1"``); an array found is compared
    element by element. ``None`` in ``expected`` holds when the path finds
    nothing but blanks.
    """

    path: JsonPath
    expected: frozenset[str | None]

    def holds(self, document: Any) -> bool:
        found = self.path.values(document)
        if len(found) == 1 and type(value := found[0]) is str:  # (most conditions: a form's id)
            if (kept := value.strip()) and kept[0] not in INVISIBLE:  # not blank: as below
                return value in self.expected
        found = present(found)
        if not found:
            return None in self.expected
        for value in found:
            if to_text(value) in self.expected:
                return True
        return False

    def describe(self) -> str:
        shown = sorted("null" if e is None else repr(e) for e in self.expected)
        return f"{self.path.text} == {' or '.join(shown)}"


#: Conditions that must all hold.
Rule = tuple[Condition, ...]


def rules_hold(rules: tuple[Rule, ...], document: Any) -> Rule | None:
    """The first rule whose conditions all hold, else ``None``."""
    for rule in rules:
        for condition in rule:
            if not condition.holds(document):
                break
        else:
            return rule
    return None


def describe_rule(rule: Rule) -> str:
    """``$.a == 'x' and $.b == 'y'``; an empty rule reads ``always``."""
    return " and ".join(c.describe() for c in rule) or "always"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One Lead.Capture attribute and where its value comes from."""

    attribute: str
    #: The path read (``path: [$.a, $.b]``: the first of them).
    path: JsonPath | None = None
    #: ``path: [$.a, $.b, ...]``: the paths after the first, tried in order when the ones
    #: before them find no value (kept apart so a one-path field reads just ``path``).
    fallbacks: tuple[JsonPath, ...] = ()
    #: A constant (``{value: ...}``), used when ``path`` is ``None``.
    value: Any = None
    transforms: tuple[Transform, ...] = ()
    default: str | None = None
    required: bool = False
    #: ``path``'s text (``None`` for a constant), what a warning names: kept for each
    #: field mapped, so taken once here.
    path_text: str | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_text", self.path.text if self.path is not None else None)

    @property
    def paths(self) -> tuple[JsonPath, ...]:
        """Every path the field may read, in the order they are tried."""
        return (self.path, *self.fallbacks) if self.path is not None else ()

    def __eq__(self, other: object) -> bool:
        """Field by field, the constant by its type too: ``{value: 1}`` sends "1" and
        ``{value: true}`` "true", though Python finds ``1 == True``. (A reload compares
        mappings to know whether events already mapped need mapping again,
        ``hub.dispatch.worker``: one changing only such a constant was taken as unchanged,
        and the events the lanes held went out with the old value.)"""
        if not isinstance(other, FieldSpec):
            return NotImplemented
        return (
            self.attribute == other.attribute
            and self.path == other.path
            and self.fallbacks == other.fallbacks
            and _typed(self.value) == _typed(other.value)
            and self.transforms == other.transforms
            and self.default == other.default
            and self.required == other.required
        )

    def __hash__(self) -> int:
        return hash((self.attribute, self.path, self.fallbacks, _typed(self.value)))


def _typed(value: Any) -> Any:
    """``value`` with the type of each of its scalars beside it (``True`` and ``1`` apart)."""
    if isinstance(value, list | tuple):
        return ("list", tuple(_typed(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((_typed(k), _typed(v)) for k, v in value.items()))
    return (type(value).__name__, value)


@dataclass(frozen=True, slots=True)
class CompiledMapping:
    """A mapping, ready to apply: paths compiled, transforms parsed, names checked."""

    name: str
    endpoint: str
    target: str
    fields: tuple[FieldSpec, ...]
    #: Any one rule holding lets the mapping take the event; ``()`` takes every event.
    match: tuple[Rule, ...] = ()
    #: Any one rule holding skips the event.
    skip_if: tuple[Rule, ...] = ()
    search_by: str | None = None
    update_behavior: str | None = None
    default_region: str | None = None
    origin: Origin | None = None

    def matches(self, document: Any) -> bool:
        """Whether this mapping takes ``document`` (its ``match`` holds)."""
        return not self.match or rules_hold(self.match, document) is not None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """The exact Lead.Capture call a document becomes (keys and host excepted)."""

    mapping: str
    target: str
    #: Query parameters besides the keys (``LeadUpdateBehavior``).
    query: dict[str, str]
    #: ``[{"Attribute": name, "Value": text}, ...]``, every value a string.
    body: list[dict[str, str]]
    warnings: tuple[str, ...] = ()

    status: Literal["send"] = "send"

    def value(self, attribute: str) -> str | None:
        """The value sent for ``attribute`` (the last one, as LeadSquared reads it)."""
        found = None
        for item in self.body:
            if item["Attribute"].lower() == attribute.lower():
                found = item["Value"]
        return found

    def lead_keys(self) -> tuple[str, ...]:
        """Identity keys of the lead: ``email:<lowercased>``, ``phone:<digits>``,
        ``prospect:<lowercased id>``, and for a ``SearchBy`` on another field (a unique
        custom field) ``field:<attribute>:<lowercased value>``.

        Two requests sharing a key may touch the same lead, so they must be sent
        in order. (ProspectID and a custom SearchBy field identify a lead as surely as an
        email: without their keys, two captures of one anonymous visitor, or of one
        ``mx_`` id, went out in any order, and a retried older one overwrote the newer.)
        """
        keys = []
        email = self.value("EmailAddress")
        if email and email.strip():
            keys.append(f"email:{_key_text(email)}")
        phone = self.value("Phone")
        digits = "".join(ch for ch in phone or "" if ch.isdigit())
        if digits:
            keys.append(f"phone:{digits}")
        prospect = self.value("ProspectID")
        if prospect and prospect.strip():
            keys.append(f"prospect:{_key_text(prospect)}")
        search_by = self.value("SearchBy")
        if search_by and search_by.lower() not in ("emailaddress", "phone"):
            found = self.value(search_by)
            if found and found.strip():
                keys.append(f"field:{search_by.lower()}:{_key_text(found)}")
        return tuple(keys)


def _key_text(value: str) -> str:
    """``value`` as a lead key compares it: trimmed, lowercased.

    (A NUL cannot be stored in PostgreSQL's text; the key only has to compare equal.)
    """
    return value.strip().lower().replace(chr(0), chr(0xFFFD))


@dataclass(frozen=True, slots=True)
class Skip:
    """``skip_if`` held: the event is recorded as skipped, not sent."""

    mapping: str
    reason: str
    status: Literal["skipped"] = "skipped"


@dataclass(frozen=True, slots=True)
class Unmatched:
    """No mapping takes the event; it is kept as ``unmatched`` (replayable)."""

    mapping: str | None
    reason: str
    status: Literal["unmatched"] = "unmatched"


@dataclass(frozen=True, slots=True)
class MappingError:
    """The event cannot be mapped (a required value is missing, mappings overlap, the
    document cannot be evaluated).

    ``warnings``: what the mapping left out of this document (as a request's), when it
    got that far: a required value missing is often the cause, and its reason ends with
    them, briefly.
    """

    mapping: str | None
    reason: str
    warnings: tuple[str, ...] = ()

    status: Literal["error"] = "error"


Result = CaptureRequest | Skip | Unmatched | MappingError
