"""Mapping a document: pure functions, no I/O, no clock.

``apply(mapping, document)`` runs one mapping; ``map_document(mappings,
document)`` first picks the one mapping of an endpoint whose ``match`` holds.
The same document and mapping always give the same result.

Neither raises on any document: one that cannot be evaluated (a value nested too deeply
to write, an unexpected error in a path or transform) gives :class:`MappingError` with
the reason, which the dispatcher records as ``dead`` (replayable once fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hub.mapping import explain
from hub.mapping.model import (
    CONSENT_MAP,
    OPT_OUT_MAP,
    OPT_OUT_VALUES,
    OPT_OUTS,
    CaptureRequest,
    CompiledMapping,
    FieldSpec,
    MappingError,
    Result,
    Skip,
    Unmatched,
    rules_hold,
)
from hub.mapping.steps import indexed, indexing
from hub.mapping.transforms import Context, object_left_out
from hub.mapping.values import (
    ARRAYS,
    INVISIBLE,
    DocumentError,
    is_blank,
    present,
    shown_text,
    to_text,
)

if TYPE_CHECKING:  # hub.config imports hub.mapping; importing it back would be circular
    from hub.config.models import JsonPath


def field_value(spec: FieldSpec, document: Any, ctx: Context) -> str | None:
    """The string sent for ``spec``, or ``None`` to leave the attribute out.

    ``path: [$.a, $.b]`` reads the first path that gives a value, as one path gives one:
    something not null or blank (arrays opened; an empty one gives nothing). That is judged
    before the transforms, so which path is read depends on the document alone, and the
    transforms then work on that path's values only: one they leave out (a phone number
    that does not parse, an object) is left out with its warning, then ``default``, never
    swapped for a later path's value. A value the sender gave that cannot be sent is said,
    not silently replaced by another member, and ``join`` never mixes two paths' values.
    """
    listed = False  # whether the values read came out of a list (a multi-select answer)
    if spec.path is not None:
        found = spec.path.values(document)
        if len(found) == 1 and type(found[0]) in _SCALARS:  # the common case: as present
            first = found[0]  # (is_blank's answer, its call saved for most strings)
            if type(first) is str and not ((kept := first.strip()) and kept[0] not in INVISIBLE):
                values = [] if is_blank(first) else found
            else:
                values = found
            if values:  # one value, not blank: each transform gives one or none (single)
                for transform in spec.transforms:
                    first = transform.single(first, ctx)
                    if first is None:
                        return spec.default
                # (a number or boolean found, or given back by a map that does not list it)
                return first if type(first) is str else to_text(first)
        else:
            values = present(found)
            listed = _holds_a_list(found)
        if not values and spec.fallbacks:
            values, listed = _first_found(spec.fallbacks, document, ctx)
    else:
        values = [] if is_blank(spec.value) else [spec.value]
    for transform in spec.transforms:
        values = transform.apply(values, ctx)
    if len(values) == 1 and type(values[0]) in _SCALARS:  # the common case, one value:
        # what the loop below gives for it (no value here is blank: the path's are left out
        # above, a constant's too, and each transform drops those it gives)
        return values[0] if type(values[0]) is str else to_text(values[0])

    for index, value in enumerate(values):
        if object_left_out(value, ctx):
            continue  # the next value found, else the default
        text = to_text(value)
        if not is_blank(text):
            if listed and index < len(values) - 1:
                _first_of_list(values[index:], ctx)
            return text
    return spec.default


#: The types of a JSON value that ``present`` keeps as it is, but a blank string.
_SCALARS = frozenset({str, int, float, bool})


def _holds_a_list(found: list[Any]) -> bool:
    """Whether a path found a list among its values (``present`` opens it up)."""
    for value in found:
        if isinstance(value, ARRAYS):
            return True
    return False


def _first_of_list(values: list[Any], ctx: Context) -> None:
    """Warn that only the first of ``values``, opened up from a list the path found, is sent.

    A multi-select answer or a checkbox list (Typeform's ``choices.labels``, a Graph lead's
    ``values``) mapped without ``join`` sent its first choice alone, and the others were lost
    without a word. Several values from several matches (``$.lead['work_email','email']``,
    ``$..email``) take the first on purpose, and are not warned about.
    """
    first = shown_text(values[0])
    ctx.warn(
        f"{ctx.path} found a list of {len(values)} values; sent the first, {first!r}, the "
        "others not (add join(;) to its transforms to send them all, or end the path with "
        "[0] to take the first alone)"
    )


def _first_found(
    paths: tuple[JsonPath, ...], document: Any, ctx: Context
) -> tuple[list[Any], bool]:
    """The values of the first of ``paths`` that gives any (not null or blank), else ``[]``,
    and whether they came out of a list (:func:`_holds_a_list`).

    ``ctx.path`` becomes that path: the warnings about its values name the path read.
    """
    for path in paths:
        found = path.values(document)
        values = present(found)
        if values:
            ctx.path = path.text
            return values, _holds_a_list(found)
    return [], False


def _opt_out_sent(spec: FieldSpec, value: str, path: str | None) -> str:
    """The warning for opt-out flag ``spec`` sending ``value``, neither "0" nor "1" (read
    from ``path``, the path whose values were used), with the fix its mapping needs.

    The value is still sent as written (interfaces.md: the hub never guesses a flag; a
    consent question's true means "0"), but what LeadSquared makes of it is not documented
    and the sandbox takes any text: without this, nothing said so. ``leadhub check`` warns
    of a field that may send such a value; a map giving only "0" and "1" passes a value it
    does not list as it is, which only the document shows.
    """
    meaning = OPT_OUTS[spec.attribute]
    takes = f'LeadSquared\'s {spec.attribute} takes "1" ({meaning}) or "0"'
    last = spec.transforms[-1] if spec.transforms else None
    shown = repr(shown_text(value))
    if spec.path is None or value == spec.default:
        fix = 'it is the field\'s value or default: write "1" or "0" there'
        return f"{spec.attribute}: sent {shown}; {takes}: {fix}"
    inverse = f"(or the inverse, {CONSENT_MAP}, when the question asks for consent)"
    if last is None:
        fix = f"add transform: {OPT_OUT_MAP} {inverse}"
    elif last.name != "map":
        fix = f"end its transforms with a map to those, like {OPT_OUT_MAP} {inverse}"
    elif value in last.arg.values():
        fix = 'its map gives it: write "1" or "0" there'
    else:
        fix = (
            'its map does not list it: add it, mapped to "1" or "0" (or a \'*\' entry for '
            "every value the map does not list)"
        )
    return f"{spec.attribute}: sent {shown} (from {path}); {takes}: {fix}"


def _nothing_sent(spec: FieldSpec, document: Any, notes: list[str]) -> str:
    """Why ``spec`` gave no value for ``document``: what each path tried found, and why the
    one read was not sent (``notes``: the warnings recorded while evaluating it, each
    ``Attribute: ...``).

    "found nothing" only when a path found nothing: an object it found, a value its
    transforms dropped (a phone number that does not parse) or only blanks say so. Paths
    after the one read were not tried, so they are not named.
    """
    prefix = f"{spec.attribute}: "
    said = "; ".join(note.removeprefix(prefix) for note in notes)
    if spec.path is None:
        return said or "its value is blank"
    tried = []
    for path in spec.paths:
        found = path.values(document)
        if not found:
            tried.append(f"{path.text} found nothing")
            continue
        kept = present(found)
        if not kept:
            tried.append(f"{path.text} found only null, blank or empty values")
            continue
        if not said:
            names = ", ".join(t.name for t in spec.transforms)
            shown = repr(shown_text(kept[0]))
            said = f"{path.text} found {shown}, which its transforms ({names}) left out"
        break
    return "; ".join([*tried, said] if said else tried)


#: At most this many of the other fields' warnings end a missing-value reason (the rest
#: are counted), each cut to :data:`_BRIEF` characters: a dead event's reason stays short.
_LISTED = 3
_BRIEF = 120
#: Where a warning's advice starts (transforms.py's wordings), and how much of the marker
#: stays: the brief form keeps what was left out and why. The last one found counts, so
#: that the same words inside a quoted value do not cut it short.
_ADVICE = (("; left out", 0), (", not sent: ", len(", not sent")))


def _brief(warning: str) -> str:
    """``warning`` as the end of a failure's reason names it: what was left out and why,
    without the advice on how to send it (``leadhub try --json`` lists it whole)."""
    for marker, kept in _ADVICE:
        at = warning.rfind(marker)
        if at > 0:
            warning = warning[: at + kept]
            break
    return warning if len(warning) <= _BRIEF else warning[: _BRIEF - 3] + "..."


def _missing_required(
    mapping: str, missing: list[tuple[str, int, int]], warnings: list[str], document: Any
) -> MappingError:
    """The failure for a document that gives no value for a ``required`` field: each such
    field and why, then, briefly, what the other fields left out.

    Those warnings are often the cause (a phone dropped as no number, where the phone was
    meant to identify the lead), and a failure is never sent, so nothing else shows them:
    the reason (``leadhub try``, a dead event's last error) ends with them, and the result
    carries them all, whole, as a request to send does.
    """
    reason = f"required value missing in mapping {mapping!r}: " + ", ".join(
        text for text, _, _ in missing
    )
    reason += explain.not_a_lead(document)  # a lead wrapped in an array, say
    explained = {i for _, start, end in missing for i in range(start, end)}
    others = [_brief(w) for i, w in enumerate(warnings) if i not in explained]
    if others:
        listed = "; ".join(others[:_LISTED])
        more = len(others) - _LISTED
        reason += f"; also left out: {listed}" + (f"; and {more} more" if more > 0 else "")
    return MappingError(mapping, reason, warnings=tuple(warnings))


def _cannot_evaluate(mapping: str, exc: Exception) -> MappingError:
    """The outcome for a document ``mapping`` failed on with ``exc`` (never raised on)."""
    if isinstance(exc, DocumentError):
        cause = str(exc)
    else:  # a bug, or a document shape nothing foresaw: name the exception
        cause = f"{type(exc).__name__}: {str(exc)[:200]}"
    return MappingError(mapping, f"mapping {mapping!r} cannot evaluate this document: {cause}")


def apply(mapping: CompiledMapping, document: Any) -> Result:
    """Map ``document`` with ``mapping``: a request to send, or why not."""
    try:
        if not mapping.matches(document):
            why = explain.match_failed(mapping, document)
            reason = f"match of mapping {mapping.name!r} does not hold: {why}"
            return Unmatched(mapping.name, reason)
    except Exception as exc:
        return _cannot_evaluate(mapping.name, exc)
    return _apply_matched(mapping, document)


def _apply_matched(mapping: CompiledMapping, document: Any) -> Result:
    """:func:`apply` once ``mapping``'s match is known to hold."""
    try:
        return _evaluate(mapping, document)
    except Exception as exc:
        return _cannot_evaluate(mapping.name, exc)


def _evaluate(mapping: CompiledMapping, document: Any) -> Result:
    """:func:`_apply_matched`, raising what a path, transform or value may raise; the
    fields' filters picking answers out of one list group it once (:func:`indexing`)."""
    token = indexing()
    try:
        return _evaluate_indexed(mapping, document)
    finally:
        indexed(token)


def _evaluate_indexed(mapping: CompiledMapping, document: Any) -> Result:
    skip_rule = rules_hold(mapping.skip_if, document)
    if skip_rule is not None:
        held = explain.skip_held(skip_rule, document)
        return Skip(mapping.name, f"skip_if of mapping {mapping.name!r} held: {held}")
    body: list[dict[str, str]] = []
    #: Each required field that gave nothing: its text, and the slice of ``ctx.warnings``
    #: its own notes fill (already in its text, so not repeated after it).
    missing: list[tuple[str, int, int]] = []
    #: Opt-out flags sent a value other than "0" or "1": sent, so not among what was left
    #: out (a failure's reason lists those), but said after them.
    flags: list[str] = []
    ctx = Context(attribute="", default_region=mapping.default_region)
    noted_so_far = ctx.warnings  # (the list itself: appended to, never replaced)
    for spec in mapping.fields:
        attribute = ctx.attribute = spec.attribute
        ctx.path = spec.path_text
        noted = len(noted_so_far)
        value = field_value(spec, document, ctx)
        if value is None:
            if spec.required:
                why = _nothing_sent(spec, document, noted_so_far[noted:])
                missing.append((f"{attribute} ({why})", noted, len(noted_so_far)))
            continue
        body.append({"Attribute": attribute, "Value": value})
        if attribute in OPT_OUTS and value not in OPT_OUT_VALUES:
            flags.append(_opt_out_sent(spec, value, ctx.path))
    if missing:
        return _missing_required(mapping.name, missing, ctx.warnings, document)
    warnings = [*ctx.warnings, *flags]
    if mapping.search_by:
        if any(item["Attribute"] == mapping.search_by for item in body):
            body.append({"Attribute": "SearchBy", "Value": mapping.search_by})
        else:
            warnings.append(f"SearchBy left out: the document gives no {mapping.search_by}")
    query = {"LeadUpdateBehavior": mapping.update_behavior} if mapping.update_behavior else {}
    return CaptureRequest(
        mapping=mapping.name,
        target=mapping.target,
        query=query,
        body=body,
        warnings=tuple(warnings),
    )


def map_document(mappings: Sequence[CompiledMapping], document: Any) -> Result:
    """Pick the endpoint's one mapping whose ``match`` holds and apply it.

    None holds: :class:`Unmatched`, its reason naming for each mapping the conditions that
    failed and what their paths found (worked out then, so a document a mapping takes costs
    no more). More than one: :class:`MappingError` naming them.
    """
    if not mappings:
        return Unmatched(None, "the endpoint has no mappings")
    taking = []
    for mapping in mappings:
        try:
            if mapping.matches(document):
                taking.append(mapping)
        except Exception as exc:
            return _cannot_evaluate(mapping.name, exc)
    if not taking:  # the rare path: only now is each mapping's failed match worked out
        return Unmatched(None, explain.unmatched(mappings, document))
    if len(taking) > 1:
        names = ", ".join(repr(m.name) for m in taking)
        return MappingError(
            None, f"mappings {names} all match this event; make their match exclusive"
        )
    return _apply_matched(taking[0], document)
