"""Mapping a document: pure functions, no I/O, no clock.

``apply(mapping, document)`` runs one mapping; ``map_document(mappings,
document)`` first picks the one mapping of an endpoint whose ``match`` holds.
The same document and mapping always give the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.mapping.model import (
    CaptureRequest,
    CompiledMapping,
    FieldSpec,
    MappingError,
    Result,
    Skip,
    Unmatched,
    describe_rule,
    rules_hold,
)
from hub.mapping.transforms import Context
from hub.mapping.values import is_blank, present, to_text


def field_value(spec: FieldSpec, document: Any, ctx: Context) -> str | None:
    """The string sent for ``spec``, or ``None`` to leave the attribute out."""
    if spec.path is not None:
        values = present(spec.path.values(document))
    else:
        values = [] if is_blank(spec.value) else [spec.value]
    for transform in spec.transforms:
        values = transform.apply(values, ctx)
    for value in values:
        text = to_text(value)
        if text.strip():
            return text
    return spec.default


def apply(mapping: CompiledMapping, document: Any) -> Result:
    """Map ``document`` with ``mapping``: a request to send, or why not."""
    if not mapping.matches(document):
        rules = " or ".join(f"({describe_rule(r)})" for r in mapping.match)
        return Unmatched(mapping.name, f"match of mapping {mapping.name!r} does not hold: {rules}")
    return _apply_matched(mapping, document)


def _apply_matched(mapping: CompiledMapping, document: Any) -> Result:
    """:func:`apply` once ``mapping``'s match is known to hold."""
    skip_rule = rules_hold(mapping.skip_if, document)
    if skip_rule is not None:
        return Skip(
            mapping.name, f"skip_if of mapping {mapping.name!r} held: {describe_rule(skip_rule)}"
        )
    body: list[dict[str, str]] = []
    missing: list[str] = []
    ctx = Context(attribute="", default_region=mapping.default_region)
    for spec in mapping.fields:
        ctx.attribute = spec.attribute
        value = field_value(spec, document, ctx)
        if value is None:
            if spec.required:
                where = spec.path.text if spec.path is not None else "its value"
                missing.append(f"{spec.attribute} ({where} found nothing)")
            continue
        body.append({"Attribute": spec.attribute, "Value": value})
    if missing:
        return MappingError(
            mapping.name,
            f"required value missing in mapping {mapping.name!r}: {', '.join(missing)}",
        )
    warnings = list(ctx.warnings)
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

    None holds: :class:`Unmatched`. More than one: :class:`MappingError` naming them.
    """
    if not mappings:
        return Unmatched(None, "the endpoint has no mappings")
    taking = [m for m in mappings if m.matches(document)]
    if not taking:
        names = ", ".join(repr(m.name) for m in mappings)
        return Unmatched(None, f"no mapping matched; tried {names}")
    if len(taking) > 1:
        names = ", ".join(repr(m.name) for m in taking)
        return MappingError(
            None, f"mappings {names} all match this event; make their match exclusive"
        )
    return _apply_matched(taking[0], document)
