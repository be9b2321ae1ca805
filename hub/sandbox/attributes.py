"""Reading a ``Lead.Capture`` body: attribute names, values and the SearchBy pseudo-attribute.

The body is a JSON array of ``{"Attribute": NAME, "Value": VALUE}``. Names match
the lead schema case-insensitively and are stored by their canonical schema
name (``prospectid`` -> ``ProspectID``); custom fields are ``mx_`` plus letters,
digits and underscores, of any script (:func:`is_custom_name`), stored with the
``mx_`` prefix in lower case and the rest as sent. Values: strings as sent,
numbers as the body writes them (``1E2`` stays
``"1E2"``, ``1.50`` ``"1.50"``, a number of any length keeps every digit: the API
takes a Value as a string, and a JSON reader that binds a number to a string
member, as .NET's DataContractJsonSerializer does, keeps its text), booleans as
``true`` / ``false``; ``null``, ``""`` or whitespace-only values count as absent and
are dropped before anything else, so they neither identify nor clear; objects
and arrays are refused. A repeated attribute: the last present value wins.
``EmailAddress`` and ``ProspectID`` are trimmed; a Phone must hold 7 to 15 digits.

The body is UTF-8 JSON without a byte order mark: a body starting with one is not
JSON to the API (400, with a reason of its own). The API is a WCF service
(``LeadManagement.svc``), and .NET's DataContractJsonSerializer, WCF's JSON reader,
fails on a leading BOM ("Encountered unexpected character").
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, NoReturn

from hub.sandbox.errors import invalid_input

PROSPECT_ID = "ProspectID"
EMAIL = "EmailAddress"
PHONE = "Phone"
MOBILE = "Mobile"
RELATED_COMPANY = "RelatedCompanyId"
SEARCH_BY = "SearchBy"

STANDARD = (
    PROSPECT_ID,
    "FirstName",
    "LastName",
    EMAIL,
    PHONE,
    MOBILE,
    "Company",
    "JobTitle",
    "Website",
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
    "DoNotEmail",
    "DoNotCall",
    RELATED_COMPANY,
)
SOURCE_FIELDS = frozenset(
    {"Source", "SourceMedium", "SourceCampaign", "SourceContent", "SourceReferrer"}
)
UNIQUE_FIELDS = frozenset({EMAIL, PHONE})

_CANONICAL = {name.lower(): name for name in STANDARD}
# Matched with fullmatch: a pattern ending in ``$`` also matches before a final newline, so
# "9876543210\n" was a phone ("\t..." was not).
_EMAIL = re.compile(r"[^\s@\"(),:;<>\[\]\\]+@[^\s@\"(),:;<>\[\]\\.]+(?:\.[^\s@\"(),:;<>\[\]\\.]+)+")
#: What a Phone may hold besides its digits: the separators numbers are written with (``/`` in
#: ``030/1234567``, Germany's; ``.`` in ``555.000.1111``). Letters are no phone number.
_PHONE_CHARS = re.compile(r"[0-9 +\-()./]+")
_SEARCH_BY = {"emailaddress": EMAIL, "phone": PHONE}
MAX_BODY = 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_SHAPE = "send an array of Attribute/Value objects"


class JsonNumber:
    """A JSON number as the body wrote it (``1E2``, ``1.50``, ``-0``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class CaptureBody:
    """A parsed, validated Lead.Capture body.

    ``attrs`` maps canonical names to string values, in the order first sent;
    ``search_by`` is ``EmailAddress``, ``Phone`` or ``None``.
    """

    attrs: dict[str, str] = field(default_factory=dict)
    search_by: str | None = None

    def get(self, name: str) -> str | None:
        """The value of a canonical attribute, or ``None`` when absent."""
        return self.attrs.get(name)


def digits(text: str | None) -> str:
    """The digits of a phone number (``+91-98765 43210`` -> ``919876543210``)."""
    return "".join(ch for ch in text or "" if ch.isascii() and ch.isdigit())


def canonical_name(name: str) -> str | None:
    """The schema name for ``name`` (case-insensitive), or ``None`` when unknown."""
    standard = _CANONICAL.get(name.lower())
    if standard:
        return standard
    if is_custom_name(name):
        return "mx_" + name[3:]
    if name.lower() == SEARCH_BY.lower():
        return SEARCH_BY
    return None


def is_custom_name(name: str) -> bool:
    """Whether ``name`` is a custom field's schema name: ``mx_`` (any case), then letters,
    digits and ``_``, ASCII or not (a script's combining marks, such as Devanagari's vowel
    signs, count as letters); spaces, hyphens and other punctuation are not.

    A schema name is ``mx_`` and the field's display name with its spaces as ``_``
    (leadsquared-facts.md, "Custom fields"), and LeadSquared's rule for letters outside
    ASCII is not known: ``leadhub check`` loads ``mx_Città`` with a warning saying so
    (``hub/config/mappings.py``), and the sandbox, the default target, refused it as an
    unknown attribute, so every lead of a mapping tried on it ended dead.
    """
    rest = name[3:]
    return (
        name[:3].lower() == "mx_"
        and bool(rest)
        and all(
            char == "_"
            or (char.isascii() and char.isalnum())
            or (not char.isascii() and unicodedata.category(char)[0] in "LNM")
            for char in rest
        )
    )


def is_email(text: str) -> bool:
    """Whether ``text`` looks like an email address (one ``@``, a dotted domain)."""
    return bool(_EMAIL.fullmatch(text))


def _no_constant(name: str) -> NoReturn:
    msg = f"{name} is not a JSON value"
    raise ValueError(msg)


def _parse_json(raw: bytes) -> Any:
    """The JSON document in a Lead.Capture body, every number a :class:`JsonNumber`.

    Raises:
        MXError: 400 for a byte order mark, bytes that are not UTF-8, or text that is not JSON.
    """
    if raw.startswith(_BOM):
        msg = f"The body starts with a UTF-8 byte order mark (EF BB BF); {_SHAPE}, without it."
        raise invalid_input(msg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"The body is not UTF-8 ({exc.reason} at byte {exc.start}); {_SHAPE}."
        raise invalid_input(msg) from None
    if not text.strip():
        msg = f"The body is empty; {_SHAPE}."
        raise invalid_input(msg)
    try:
        return json.loads(
            text, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_no_constant
        )
    except ValueError as exc:
        msg = f"The body is not valid JSON ({exc}); {_SHAPE}."
        raise invalid_input(msg) from None
    except RecursionError:
        msg = f"The body nests arrays and objects too deeply to read; {_SHAPE}."
        raise invalid_input(msg) from None


def _value_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, JsonNumber):
        text = value.text
    elif isinstance(value, str):
        try:  # an unpaired surrogate escape ("\ud800") is JSON, but no text can hold it
            value.encode("utf-8")
        except UnicodeEncodeError:
            msg = f"The Value of {name!r} holds an unpaired surrogate escape; send text."
            raise invalid_input(msg) from None
        text = value
    else:
        msg = f"The Value of {name!r} is a JSON {type(value).__name__}; send a string."
        raise invalid_input(msg)
    if not text.strip():
        return None
    if name in (EMAIL, PROSPECT_ID):
        text = text.strip()
    return text


def parse_capture_body(content_type: str | None, raw: bytes) -> CaptureBody:
    """Validate a Lead.Capture request body.

    Raises:
        MXError: 400 for a wrong Content-Type, bad JSON, a wrong shape, an
            unknown attribute, an invalid email, phone or SearchBy.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        msg = f"Content-Type {content_type!r} is not supported; send 'application/json'."
        raise invalid_input(msg)
    if len(raw) > MAX_BODY:
        msg = f"The body holds {len(raw)} bytes; send at most {MAX_BODY}."
        raise invalid_input(msg)
    items = _parse_json(raw)
    if not isinstance(items, list):
        msg = "The body must be a JSON array of {'Attribute': ..., 'Value': ...} objects."
        raise invalid_input(msg)
    attrs: dict[str, str] = {}
    keys: dict[str, str] = {}  # lower-case name -> canonical name, for mx_ spellings
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "Attribute" not in item or "Value" not in item:
            msg = f"Item {index} is not an object with 'Attribute' and 'Value': {item!r}."
            raise invalid_input(msg)
        name = item["Attribute"]
        if not isinstance(name, str):
            msg = f"Item {index} has Attribute {name!r}; an attribute name is a string."
            raise invalid_input(msg)
        canonical = canonical_name(name)
        if canonical is None:
            msg = (
                f"Unknown attribute {name!r}; use a lead schema name such as 'EmailAddress' "
                "or a custom field 'mx_...'."
            )
            raise invalid_input(msg)
        text = _value_text(canonical, item["Value"])
        if text is None:
            continue
        canonical = keys.setdefault(canonical.lower(), canonical)
        attrs[canonical] = text
    search_by = _search_by(attrs.pop(SEARCH_BY, None), attrs)
    _check_values(attrs)
    return CaptureBody(attrs=attrs, search_by=search_by)


def _search_by(value: str | None, attrs: dict[str, str]) -> str | None:
    if value is None:
        return None
    target = _SEARCH_BY.get(value.strip().lower())
    if target is None:
        msg = f"SearchBy {value!r} is not supported; use 'EmailAddress' or 'Phone'."
        raise invalid_input(msg)
    if target not in attrs:
        msg = f"SearchBy is {value!r} but the body has no {target}; send it or drop SearchBy."
        raise invalid_input(msg)
    return target


def _check_values(attrs: dict[str, str]) -> None:
    email = attrs.get(EMAIL)
    if email is not None and not is_email(email):
        msg = f"EmailAddress {email!r} is not a valid email address."
        raise invalid_input(msg)
    phone = attrs.get(PHONE)
    if phone is not None:
        count = len(digits(phone))
        if not _PHONE_CHARS.fullmatch(phone) or not 7 <= count <= 15:
            msg = (
                f"Phone {phone!r} is not a phone number; send 7 to 15 digits, "
                "optionally with '+', '-', '.', '/', spaces or brackets."
            )
            raise invalid_input(msg)
