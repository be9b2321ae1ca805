"""Why no mapping took a document, and what a ``skip_if`` that held found: the words of an
unmatched or skipped reason (``leadhub try`` prints it, a dead or unmatched event keeps it
as its last error).

A ``match`` whose path has a typo (``$.form_response.formid``) finds nothing and holds
for no document, without an error: the reason names each condition that failed and what
its path found, so that the typo shows. Worked out only once the outcome is known (no
mapping matched, a ``skip_if`` held), by evaluating the paths again: a document that is
sent never pays for it.

Bounded: a value is quoted to :data:`~hub.mapping.values.SHOWN` characters, and at most
:data:`LISTED` values, failed conditions of a rule and rules of a mapping are named (the
rest counted), for at most :data:`MAPPINGS` mappings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.mapping.model import CompiledMapping, Condition, Rule, describe_rule
from hub.mapping.values import present, shown_text, to_text

#: At most this many values found (or wanted), failed conditions of one rule and rules of
#: one mapping are named; the rest are counted.
LISTED = 3
#: At most this many mappings are explained in an unmatched reason; the rest are counted.
MAPPINGS = 5


def _quoted(text: str) -> str:
    """``text`` as a reason quotes it: at most :data:`SHOWN` characters, cut with "..."."""
    return repr(shown_text(text))


def _listed(items: Sequence[str], sep: str, last: str) -> str:
    """The first :data:`LISTED` of ``items`` joined by ``sep``, then ``{last} N more``."""
    text = sep.join(items[:LISTED])
    more = len(items) - LISTED
    return text + (f" {last} {more} more" if more > 0 else "")


def _wanted(condition: Condition) -> str:
    """What ``condition`` wants, as :meth:`Condition.describe` names it: ``'a' or null``."""
    shown = sorted("null" if e is None else _quoted(e) for e in condition.expected)
    return _listed(shown, " or ", "or")


def why_not(condition: Condition, document: Any) -> str | None:
    """Why ``condition`` does not hold on ``document``, naming what its path found
    (``$.form_id is 'Zz9' (wants 'aB3')``, ``$.formid found nothing``); ``None`` if it holds.
    """
    path = condition.path.text
    try:
        found = condition.path.values(document)
        kept = present(found)
        if not kept:
            if None in condition.expected:
                return None
            if not found:
                return f"{path} found nothing"
            return f"{path} found only null, blank or empty values"
        texts = list(dict.fromkeys(to_text(value) for value in kept))  # distinct, in order
    except Exception:  # a later condition of a rule the match never evaluated
        return f"{path} cannot be evaluated on this document"
    if any(text in condition.expected for text in texts):
        return None
    if len(texts) == 1:
        return f"{path} is {_quoted(texts[0])} (wants {_wanted(condition)})"
    listed = _listed([_quoted(text) for text in texts], ", ", "and")
    return f"{path} found {listed} (wants {_wanted(condition)})"


def _rule_failed(rule: Rule, document: Any) -> str:
    """Each condition of ``rule`` that does not hold on ``document``, and why."""
    failed = [why for c in rule if (why := why_not(c, document)) is not None]
    if not failed:  # cannot happen: paths are pure; name the rule rather than nothing
        return f"({describe_rule(rule)})"
    return _listed(failed, " and ", "and")


def match_failed(mapping: CompiledMapping, document: Any) -> str:
    """Why none of ``mapping``'s ``match`` rules holds on ``document``: each rule's failed
    conditions (`` and ``), rules joined by `` or ``, as the rules are written."""
    reasons = [_rule_failed(rule, document) for rule in mapping.match[:LISTED]]
    more = len(mapping.match) - LISTED
    return " or ".join(reasons) + (f" or {more} more rules" if more > 0 else "")


def unmatched(mappings: Sequence[CompiledMapping], document: Any) -> str:
    """The reason no mapping of ``mappings`` (all tried, none matched) takes ``document``:
    each mapping in the order tried, with why its ``match`` failed."""
    tried = [f"{m.name!r}: {match_failed(m, document)}" for m in mappings[:MAPPINGS]]
    more = len(mappings) - MAPPINGS
    if more > 0:
        tried.append(f"and {more} more")
    return "no mapping matched; tried " + "; ".join(tried) + not_a_lead(document)


def not_a_lead(document: Any) -> str:
    """``; the document is ...``: why a mapping's paths (``$.email``) find nothing in a
    document that is no JSON object, and the fix; ``""`` for an object.

    A sender that wraps its lead in an array (Zapier's "Wrap Request In Array", a scenario
    posting a list) needs ``split`` on its endpoint; a document that is text or a number is
    what a ``split`` path finding values rather than leads makes of each (a list of texts,
    or a path going on past the leads, like ``$.leads[*].email``; a wildcard opening one
    lead's values keeps the lead whole, ``hub.sources.split``). Without this the reason
    said only that ``$.email`` found nothing, in a document that visibly holds an email.
    """
    if isinstance(document, dict):
        return ""
    if isinstance(document, list):
        items = f"{len(document)} item{'s' if len(document) != 1 else ''}"
        return (
            f"; the document is a JSON array ({items}), not an object: for a sender that "
            "posts its leads in an array (Zapier's Wrap Request In Array), give the "
            "endpoint split: $[*] (each item is then one event; post this delivery again "
            "once it is set)"
        )
    shown = _quoted(document) if isinstance(document, str) else to_text(document)
    return (
        f"; the document is {shown}, not an object: when the endpoint has a split, its "
        "path found values rather than leads (a list of texts, or a path going on past the "
        "leads, like $.leads[*].email: end it at the leads); else the sender posted no JSON "
        "object"
    )


def _found(condition: Condition, document: Any) -> str:
    """`` (found 'x')``: the value by which ``condition`` holds on ``document``, when its
    description does not already say it (it wants one of several values); else ``""``."""
    if len(condition.expected) < 2:
        return ""  # $.x == 'a' (or == null): the value found is the one wanted
    try:
        kept = present(condition.path.values(document))
        texts = (to_text(value) for value in kept)
        held = next((text for text in texts if text in condition.expected), None)
    except Exception:  # it held a moment ago; the reason needs no more than its rule
        return ""
    return f" (found {'nothing' if held is None else _quoted(held)})"


def skip_held(rule: Rule, document: Any) -> str:
    """The ``skip_if`` rule that held on ``document``, each condition with the value found
    when several were wanted: ``$.changeSource == 'CRM_UI' or 'IMPORT' (found 'IMPORT')``."""
    if not rule:
        return describe_rule(rule)
    return " and ".join(c.describe() + _found(c, document) for c in rule)
