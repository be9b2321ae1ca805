"""``kind: endpoint`` and ``kind: target`` documents into :mod:`hub.config.models` objects."""

from __future__ import annotations

import base64
import binascii
import math
import re
import string
import urllib.parse
from collections.abc import Mapping

from hub.addresses import is_loopback, uncallable_ipv4
from hub.config.issues import did_you_mean
from hub.config.models import (
    DEFAULT_GRAPH_FIELDS,
    DEFAULT_GRAPH_URL,
    DEFAULT_HUBSPOT_API_URL,
    DEFAULT_HUBSPOT_PROPERTIES,
    DEFAULT_LINKEDIN_API_URL,
    DEFAULT_LINKEDIN_VERSION,
    DEFAULT_MAX_BODY,
    DEFAULT_RATE_LIMIT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TOLERANCE,
    HUBSPOT_OBJECTS,
    HUBSPOT_SIGNATURES,
    MAX_TIMEOUT,
    SELF_SPLITTING,
    SOURCES,
    Endpoint,
    FacebookOptions,
    GoogleOptions,
    HmacOptions,
    HubSpotOptions,
    JsonPath,
    LinkedInOptions,
    NoneOptions,
    Origin,
    RetrySchedule,
    SourceOptions,
    StandardOptions,
    Target,
    TokenOptions,
    TypeformOptions,
)
from hub.config.nodes import Node, as_number, variables
from hub.config.reader import Reader, type_name
from hub.mapping.paths import ExtendedPath, NativePath, PathError, SimplePath, compile_path
from hub.secrets import Secret
from hub.sources.base import DedupePaths
from hub.units import UnitError, parse_rate_limit

COMMON_ENDPOINT_KEYS = ("kind", "name", "source", "dedupe", "split", "max_body")
SOURCE_KEYS: Mapping[str, tuple[str, ...]] = {
    "facebook": ("app_secret", "verify_token", "page_access_token", "graph_url", "fields",
                 "allow_sha1", "read_timeout"),
    "linkedin": ("client_secret", "access_token", "api_url", "api_version", "read_timeout"),
    "hubspot": ("client_secret", "webhook_url", "access_token", "api_url", "properties",
                "subscription_types", "tolerance", "read_timeout", "signatures"),
    "google": ("key",),
    "typeform": ("secret",),
    "hmac": ("header", "secret", "algorithm", "encoding", "prefix", "signed",
             "timestamp_header", "tolerance", "timestamp_unit"),
    "token": ("token", "header"),
    "standard": ("secret", "tolerance"),
    "none": (),
}  # fmt: skip
TARGET_KEYS = (
    "kind",
    "name",
    "url",
    "access_key",
    "secret_key",
    "rate_limit",
    "timeout",
    "retry",
    "concurrency",
    "account",
)
MAX_CONCURRENCY = 256  # calls in flight at once to one target
RETRY_KEYS = ("initial", "max_interval", "give_up_after", "multiplier")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def url_safe(name: str) -> bool:
    """Whether ``name`` may name a target, endpoint or mapping (it is part of a URL)."""
    return _NAME.fullmatch(name) is not None


def check_name(reader: Reader, kind: str) -> str | None:
    """The document's ``name``: required, URL-safe; it names the document in the reader's
    other messages (``reader.what``). None when missing or not URL-safe: such a document is
    not registered (an endpoint so named was, listed among the "defined endpoints", and a
    mapping naming it was not told its endpoint is not defined)."""
    name = reader.text("name", required=True)
    reader.what = f"{kind} {name!r}" if name else kind
    if name is not None and not url_safe(name):
        reader.error(
            reader.get("name"),
            f"{kind} name {name!r} may hold only letters, digits, '-', '_' and '.'; "
            "rename it like 'facebook-leads'",
        )
        return None
    return name  # type: ignore[no-any-return]


class UnionInPath(PathError):
    """A JSONPath holding ``|`` between two paths (:func:`checked_path`): a field's caller
    adds that a list of paths does what it looks like it means."""


def checked_path(text: str) -> SimplePath | NativePath | ExtendedPath:
    """``text`` compiled, refusing a ``|`` union between paths, which jsonpath-ng binds to
    the steps beside it: ``$.lead.email | $.email`` reads as ``$.lead.(email | $).email``,
    so it finds ``$.email`` only when ``lead`` exists (a fallback it looks like it is not).

    Raises:
        PathError: the path does not compile, or (:class:`UnionInPath`) holds such a union.
    """
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "|" and depth == 0:
            msg = (
                f"JSONPath {text!r} holds '|', which does not join two paths: jsonpath-ng "
                "binds it to the names beside it ($.lead.email | $.email reads as "
                "$.lead.(email | $).email), so it finds the wrong values; for the first of "
                "several members of one object write $.lead['work_email','email'], "
                "else use one path"
            )
            raise UnionInPath(msg)
    stripped = text.strip()
    if re.match(r"\$[A-Za-z_]", stripped):  # $lead.email: jsonpath-ng's error is "near token"
        msg = (
            f"JSONPath {text!r} needs a '.' after the '$' (the document's root); "
            f"write $.{stripped[1:]}"
        )
        raise PathError(msg)
    return compile_path(text)


def _names(r: Reader, key: str, default: tuple[str, ...], example: str) -> tuple[str, ...]:
    """A list of names (or one comma-separated string), like Graph fields or properties."""
    node = r.get(key)
    if node is None or node.value is None:
        return default
    value = node.plain()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        r.error(node, f"'{key}' must be a list of names, like {example}")
        return default
    return tuple(value)


def _rotated(r: Reader, key: str) -> tuple[Secret, tuple[Secret, ...]]:
    """``key``'s secret (the list's first value) and, while it is rotated, the list's other
    values (:meth:`Reader.secrets`); an empty secret when none is usable (reported)."""
    found = r.secrets(key)
    if key != "token":  # (a token's own warning: _token_unsendable)
        _secret_padded(r, key, found)
    return (found[0], found[1:]) if found else (Secret(""), ())


def _secret_padded(r: Reader, key: str, secrets: tuple[Secret, ...]) -> None:
    """Warn of a signing secret (or Google's key) that starts or ends with white space or
    holds a line break: no sender's secret does, and every delivery's signature (or key)
    was refused (401) with the check saying ok. The usual causes: an env file saved with
    Windows line endings (``docker run --env-file`` keeps the ``\\r``; a ``NAME_FILE`` is read
    with its line endings made ``\\n``), or a blank line at the end of a ``NAME_FILE`` (one
    final line break is dropped, not two)."""
    for secret in secrets:
        value = secret.reveal()
        if value and (value != value.strip() or "\n" in value or "\r" in value):
            crlf = "a carriage return (\\r)" if "\r" in value else "a space, tab or line break"
            r.warn(
                r.get(key),
                f"'{key}' of {r.what} starts or ends with {crlf} (or holds one), which no "
                "sender's secret does: every delivery would be refused (401); set "
                f"{_set(r, key)} to the secret alone (an env file saved with Windows line "
                "endings leaves a \\r; a blank line at the end of its file, a \\n)",
            )
            return


def _token_unsendable(r: Reader, tokens: tuple[Secret, ...]) -> None:
    """Warn of a ``token`` that starts or ends with white space or holds a line break: no
    sender sends it, since a header's value holds no line break and loses the spaces around
    it, so every delivery was refused (401, "the token does not match") with the check
    saying ok. The usual cause is a ``NAME_FILE`` whose file ends with a blank line (one
    final line break is dropped, not two) or a space copied with the token."""
    for token in tokens:
        value = token.reveal()
        if value and (value != value.strip() or "\n" in value or "\r" in value):
            r.warn(
                r.get("token"),
                f"'token' of {r.what} starts or ends with a space, tab or line break (or "
                "holds one), which senders do not send (a header's value holds no line "
                "break and loses the spaces around it): every delivery would be refused "
                f"(401); set {_set(r, 'token')} to the token alone (a blank line at the end "
                "of its file is such a line break)",
            )
            return


def _facebook(r: Reader) -> SourceOptions:
    fields = _names(r, "fields", DEFAULT_GRAPH_FIELDS, "[id, field_data]")
    app_secret, rotating = _rotated(r, "app_secret")
    return FacebookOptions(
        app_secret=app_secret,
        verify_token=r.secret("verify_token") or Secret(""),
        page_access_token=r.secret("page_access_token") or Secret(""),
        graph_url=_api_url(r, "graph_url", DEFAULT_GRAPH_URL, "page_access_token"),
        fields=fields,
        allow_sha1=r.flag("allow_sha1", False),
        read_timeout=_read_timeout(r),
        rotating=rotating,
    )


def _read_timeout(r: Reader) -> float:
    """How long a lead read may wait (to connect, for each part of the answer)."""
    return r.duration("read_timeout", DEFAULT_READ_TIMEOUT, "10s")


#: A URL's scheme and its ``://``, in any letter case.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def lower_scheme(url: str) -> str:
    """``url`` with its scheme in lower case (``HTTPS://`` as ``https://``): schemes are
    case-insensitive (RFC 3986, 3.1), and a url so written was refused as not https://."""
    found = _SCHEME.match(url)
    return url if found is None else found.group().lower() + url[found.end() :]


def _hostname(url: str) -> str:
    """``url``'s host, or "" (none, or a url urllib cannot read)."""
    try:
        return urllib.parse.urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _api_url(r: Reader, key: str, default: str, token: str = "access_token") -> str:
    """An API base URL option: http(s), without its trailing slash (``token``: the option
    holding the token the reads send, named in a refusal).

    The reads add the lead's path after it: a query or fragment in it took that path in
    (``?hapikey=X`` + ``/crm/v3/objects/contacts/1`` is a query; after a ``#`` it is never
    sent), so every read asked for the base itself. A user name or password in it (or a key in
    its query) would be shown wherever the url is. Both are errors, the url shown without
    them (:func:`shown_url`). Plain ``http://`` off this machine (:func:`_in_clear`) is a
    warning: the token crosses the network in the clear (a local test double is called so).
    """
    url = lower_scheme(str(r.text(key, default=default)))
    shown = shown_url(url)
    if not url.startswith(("http://", "https://")):
        r.error(r.get(key), f"'{key}' {shown!r} must start with https://")
    elif "@" in urllib.parse.urlsplit(url).netloc:
        r.error(
            r.get(key),
            f"'{key}' {shown!r} holds a user name or password: it would be shown wherever the "
            f"url is; the API's token goes in '{token}'. Write the url "
            f"without them, like {default}",
        )
    elif (problem := uncallable_ipv4(_hostname(url))) is not None:
        r.error(r.get(key), f"'{key}' {shown!r} {problem}, so no lead could be read")
    elif any(mark in url for mark in "?#"):
        first = min(place for place in (url.find("?"), url.find("#")) if place >= 0)
        part = "query" if url[first] == "?" else "fragment"
        r.error(
            r.get(key),
            f"'{key}' {shown!r} has a {part}: the hub adds each lead's path after the url, "
            f"which would become part of the {part}, so every read would ask for the url "
            f"itself, not the lead; the API's token goes in '{token}'. "
            f"Write the API's base url alone, like {default}",
        )
    elif _in_clear(url):
        r.warn(
            r.get(key),
            f"'{key}' {shown!r} is http://, so the token every read sends ('{token}') and "
            f"each lead read would cross the network unencrypted; write https://, like "
            f"{default}",
        )
    return url.rstrip("/")


def _linkedin(r: Reader) -> SourceOptions:
    version = str(r.text("api_version", default=DEFAULT_LINKEDIN_VERSION))
    if not re.fullmatch(r"20\d{4}", version):
        r.error(
            r.get("api_version"),
            f"'api_version' {version!r} must be a LinkedIn API version, YYYYMM like "
            f"'{DEFAULT_LINKEDIN_VERSION}'",
        )
    client_secret, rotating = _rotated(r, "client_secret")
    return LinkedInOptions(
        client_secret=client_secret,
        access_token=_bearer_token(r),
        api_url=_api_url(r, "api_url", DEFAULT_LINKEDIN_API_URL),
        api_version=version,
        read_timeout=_read_timeout(r),
        rotating=rotating,
    )


def _hubspot(r: Reader) -> SourceOptions:
    webhook_url = str(r.text("webhook_url", required=True) or "")
    node = r.get("webhook_url")
    stand_in = node is not None and node.stand_in  # (`try` without the environment)
    # (any case of the scheme is taken, the url kept as written: it is signed as HubSpot
    # calls it)
    if (
        webhook_url
        and not stand_in
        and not lower_scheme(webhook_url).startswith(("http://", "https://"))
    ):
        r.error(
            node,
            f"'webhook_url' {shown_url(webhook_url)!r} must be the app's target URL as HubSpot "
            "calls it, like https://hub.example.com/hooks/hubspot-crm",
        )
    client_secret, rotating = _rotated(r, "client_secret")
    return HubSpotOptions(
        client_secret=client_secret,
        webhook_url=webhook_url,
        access_token=_bearer_token(r),
        api_url=_api_url(r, "api_url", DEFAULT_HUBSPOT_API_URL),
        properties=_names(r, "properties", DEFAULT_HUBSPOT_PROPERTIES, "[email, firstname]"),
        subscription_types=_subscription_types(r),
        tolerance=_tolerance(r),
        read_timeout=_read_timeout(r),
        # any (default): X-HubSpot-Signature-v3 when the request carries one, else the legacy
        # X-HubSpot-Signature (v1 or v2); v3: v3 only. Another value is an error at its line.
        signatures=r.choice("signatures", HUBSPOT_SIGNATURES, "any") or "any",
        rotating=rotating,
    )


#: The events of HubSpot's subscription types (``contact.creation``...), Webhooks API.
HUBSPOT_EVENTS = (
    "creation",
    "deletion",
    "propertyChange",
    "associationChange",
    "merge",
    "restore",
    "privacyDeletion",
)


#: HubSpot's events whose object the dispatcher cannot read, and why: a deleted object's
#: read is a 404 (each event dead, "does not exist"), and an association's event names two
#: objects (fromObjectId, toObjectId), no ``objectId`` (each left out at ingest).
UNREADABLE_EVENTS = {
    "deletion": "HubSpot sends it once the object is deleted, and its read finds nothing",
    "privacyDeletion": "HubSpot sends it once the object is deleted, and its read finds nothing",
    "associationChange": "its events name two objects (fromObjectId, toObjectId), no objectId "
    "to read",
}


def _subscription_types(r: Reader) -> tuple[str, ...]:
    """A hubspot endpoint's ``subscription_types``; a type no HubSpot event carries is
    warned of at its line: it is compared exactly with each event's ``subscriptionType``,
    so a type written otherwise than HubSpot writes it (``contact.create``,
    ``Contact.creation``) took no event, every delivery accepted and dropped, and one of an
    object the dispatcher cannot read (``object.creation``) made every event dead."""
    types = _names(r, "subscription_types", ("contact.creation",), "[contact.creation]")
    node = r.get("subscription_types")
    items = node.value if node is not None and isinstance(node.value, list) else []
    written = {item.value: item for item in items if isinstance(item, Node)}
    known = [f"{kind}.{event}" for kind in HUBSPOT_OBJECTS for event in HUBSPOT_EVENTS]
    for kind in types:
        name, _, event = kind.partition(".")
        if name in HUBSPOT_OBJECTS and event in UNREADABLE_EVENTS:
            r.warn(
                written.get(kind, node),
                f"'subscription_types' of {r.what} names {kind!r}: {UNREADABLE_EVENTS[event]}"
                ", so each of its events would be dead or left out: leave it out",
            )
            continue
        if name in HUBSPOT_OBJECTS and event in HUBSPOT_EVENTS:
            continue
        if name in HUBSPOT_OBJECTS:
            why = "HubSpot sends no event of that type, so none would be taken"
        else:
            why = (
                f"the hub reads only {', '.join(HUBSPOT_OBJECTS)} objects, named by types like "
                "contact.creation (lower case), so its events would be dead"
            )
        r.warn(
            written.get(kind, node),
            f"'subscription_types' of {r.what} names {kind!r}{did_you_mean(kind, known)}: {why}",
        )
    return types


def _placeholders(signed: str) -> list[str] | None:
    """The placeholders of an hmac ``signed`` template, in order, each as written between
    its braces (``body``, ``body:x``); None when its braces do not pair."""
    try:
        parsed = list(string.Formatter().parse(signed))
    except ValueError:
        return None
    return [
        field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        for _, field, spec, conversion in parsed
        if field is not None
    ]


def _hmac(r: Reader) -> SourceOptions:
    signed = r.text("signed", default="{body}")
    written = _placeholders(signed)
    placeholders = set(written) if written is not None else {"?"}
    usable = False  # (a template with an error gets no warning besides)
    if "body" not in placeholders or placeholders - {"body", "timestamp"}:
        r.error(
            r.get("signed"),
            f"'signed' {signed!r} must hold {{body}} and may hold {{timestamp}}, nothing else; "
            "write it like '{timestamp}.{body}'",
        )
    elif written is not None and written.count("body") > 1:
        # The body is put in once, at the first {body}: the others were signed as the text
        # "{body}", so no delivery verified, each refused with a bare 401.
        r.error(
            r.get("signed"),
            f"'signed' {signed!r} holds {{body}} {written.count('body')} times; a sender signs "
            "the body once: write it once, where the sender puts it, like '{timestamp}.{body}'",
        )
    else:
        usable = True
    timestamp_header = r.text("timestamp_header")
    if "timestamp" in placeholders and not timestamp_header:
        r.error(r.get("signed"), "'signed' uses {timestamp}; set 'timestamp_header' too")
    elif timestamp_header and usable and "timestamp" not in placeholders:
        # Its age is checked, but a delivery recorded on the way verifies under any
        # timestamp: sent again later with a fresh one, it passes. Not an error: the
        # header may be all some sender offers, but then the check keeps no replay out.
        r.warn(
            r.get("timestamp_header"),
            f"'timestamp_header' of {r.what} is set, but 'signed' {signed!r} has no "
            "{timestamp}: the timestamp's age is checked but it is not signed, so a "
            "delivery captured on the way and sent again with a fresh "
            f"{timestamp_header} passes; add {{timestamp}} to 'signed' where the sender "
            "signs it, like '{timestamp}.{body}' (or remove 'timestamp_header' if the "
            "sender does not sign it)",
        )
    secret, rotating = _rotated(r, "secret")
    return HmacOptions(
        header=r.text("header", required=True) or "",
        secret=secret,
        algorithm=r.choice("algorithm", ("sha256", "sha1", "sha512"), "sha256") or "sha256",
        encoding=r.choice("encoding", ("hex", "base64"), "hex") or "hex",
        prefix=r.text("prefix", default=""),
        signed=signed,
        timestamp_header=timestamp_header,
        tolerance=_tolerance(r, checked=bool(timestamp_header)),
        timestamp_unit=r.choice("timestamp_unit", ("s", "ms"), "s") or "s",
        rotating=rotating,
    )


def _standard(r: Reader) -> SourceOptions:
    secret, rotating = _rotated(r, "secret")
    node = r.get("secret")
    items = node.value if node is not None and isinstance(node.value, list) else [node]
    for item in items:  # each value given (an unusable one is reported already)
        text = item.value if item is not None and isinstance(item.value, str) else ""
        if text and item is not None and not item.stand_in:  # (a stand-in has no form)
            try:
                if not text.startswith("whsec_"):
                    raise ValueError(text)
                key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
            except (ValueError, binascii.Error):
                r.error(
                    item,
                    "'secret' of a standard endpoint must be 'whsec_' followed by base64, "
                    "as the sender shows it",
                )
                continue
            if not key:
                # an empty HMAC key: anyone can sign with it, so every forged delivery passed
                r.error(
                    item,
                    "'secret' of a standard endpoint is 'whsec_' with no key after it, which "
                    "anyone can sign with; set the whole secret as the sender shows it "
                    "(whsec_ followed by its base64)",
                )
    return StandardOptions(
        secret=secret,
        tolerance=_tolerance(r),
        rotating=rotating,
    )


#: The shortest signature ``tolerance`` check takes without a warning (seconds): a timestamp in
#: whole seconds is up to 1 s old when it is sent, then travels, and the sender's clock and
#: this host's differ by a second or two even when both keep time; under that, valid
#: deliveries are refused (401), some or most of them, and the sender gives up on them.
MIN_TOLERANCE = 5.0


def _tolerance(r: Reader, *, checked: bool = True) -> float:
    """The endpoint's signature ``tolerance`` (seconds); one under :data:`MIN_TOLERANCE` is a
    warning at its line, with the fix (``500ms`` against whole-second timestamps refused
    about half of the deliveries, every one once the clocks were a second apart), when a
    timestamp's age is ``checked`` (an hmac endpoint without a ``timestamp_header`` has none)."""
    seconds = r.duration("tolerance", DEFAULT_TOLERANCE, "5m")
    node = r.get("tolerance")
    if checked and node is not None and not node.reported and seconds < MIN_TOLERANCE:
        shown = node.value if node.expanded else node.raw
        r.warn(
            node,
            f"'tolerance' {shown!r} of {r.what} is too short: a delivery's timestamp is "
            "older than that when it arrives (by up to 1 s of its own rounding, its travel, "
            "and the difference of the sender's clock), so valid deliveries are refused "
            "(401); give a few minutes, like 5m (the default)",
        )
    return seconds


def _options(source: str, r: Reader) -> SourceOptions:
    if source == "facebook":
        return _facebook(r)
    if source == "linkedin":
        return _linkedin(r)
    if source == "hubspot":
        return _hubspot(r)
    if source == "google":
        key, rotating = _rotated(r, "key")
        return GoogleOptions(key=key, rotating=rotating)
    if source == "typeform":
        secret, rotating = _rotated(r, "secret")
        return TypeformOptions(secret=secret, rotating=rotating)
    if source == "hmac":
        return _hmac(r)
    if source == "token":
        token, rotating = _rotated(r, "token")
        _token_unsendable(r, (token, *rotating))
        return TokenOptions(token=token, header=r.text("header"), rotating=rotating)
    if source == "standard":
        return _standard(r)
    r.warn(
        r.get("source"),
        f"{r.what} has source: none, so anyone who can reach it can post leads; "
        "use it only on a trusted network",
    )
    return NoneOptions()


def build_endpoint(node: Node, r: Reader) -> Endpoint | None:
    """An :class:`Endpoint` from a ``kind: endpoint`` document, or ``None`` when unusable."""
    name = check_name(r, "endpoint")
    source = r.choice("source", SOURCES, None)
    if r.get("source") is None:
        r.error(None, f"{r.what} needs 'source', one of: {', '.join(SOURCES)}")
    allowed = COMMON_ENDPOINT_KEYS + SOURCE_KEYS.get(source or "", ())
    if source is None:
        allowed = COMMON_ENDPOINT_KEYS + tuple(
            dict.fromkeys(k for keys in SOURCE_KEYS.values() for k in keys)
        )
    r.check_keys(allowed)
    dedupe = _dedupe(r)
    split = _split(r, source)
    max_body = r.size("max_body", DEFAULT_MAX_BODY)
    if max_body > LARGE_BODY:
        r.warn(
            r.values.get("max_body"),
            f"'max_body' of {r.what} is {max_body:,} bytes: every request up to that size is "
            "held in memory while it is read and stored whole, so one sender (or anyone who "
            "can reach the endpoint) can make the hub hold that much per connection; a lead "
            "delivery is a few KiB: set it to 64MiB or less",
        )
    if name is None or source is None:
        return None
    return Endpoint(
        name=name,
        source=source,
        options=_options(source, r),
        dedupe=dedupe,
        max_body=max_body,
        origin=Origin(node.file, node.line),
        split=split,
    )


#: A ``max_body`` over this many bytes is a ``check`` warning.
LARGE_BODY = 64 * 1024 * 1024

#: How ``dedupe`` is written, for its errors.
_DEDUPE_FORMS = "a JSONPath like $.id, or a list of JSONPaths like [$.vid, $.form_id]"


def _dedupe(r: Reader) -> JsonPath | None:
    """The endpoint's ``dedupe``: a JSONPath naming the delivery id, or a list of them
    naming it together (:class:`~hub.sources.base.DedupePaths`; a list of one is that path)."""
    node = r.get("dedupe")
    if node is None or node.value is None:
        return None
    if isinstance(node.value, dict | bool):
        r.error(node, f"'dedupe' of {r.what} must be {_DEDUPE_FORMS}, not {type_name(node.value)}")
        return None
    items = node.value if isinstance(node.value, list) else [node]
    if not items:
        r.error(
            node,
            f"'dedupe' of {r.what} is an empty list, which names no delivery id; "
            f"write {_DEDUPE_FORMS}, or remove 'dedupe' to use the sender's id (else the "
            "body's hash)",
        )
        return None
    paths: list[JsonPath] = []
    for number, item in enumerate(items, start=1):
        where = (
            f"'dedupe' of {r.what}" if item is node else f"path {number} of 'dedupe' of {r.what}"
        )
        if item is not node and not isinstance(item.value, str):
            r.error(
                item,
                f"{where} is {type_name(item.value)}; each item of the list is a JSONPath "
                "in text, like [$.vid, \"$['form-submissions'][0]['conversion-id']\"]",
            )
            continue
        try:
            paths.append(checked_path(str(item.value)))
        except PathError as exc:
            r.error(item, f"{where}: {exc}")
    if len(paths) < len(items):
        return None  # each unusable path reported
    return paths[0] if len(paths) == 1 else DedupePaths(tuple(paths))


def _split(r: Reader, source: str | None) -> JsonPath | None:
    """The endpoint's ``split`` path (its leads in a delivery that carries several)."""
    text = r.text("split")
    if text is None:
        return None
    if source in SELF_SPLITTING:
        r.error(
            r.get("split"),
            f"'split' of {r.what}: source {source} splits its deliveries into leads itself; "
            "remove 'split'",
        )
        return None
    try:
        return checked_path(text)
    except PathError as exc:
        r.error(r.get("split"), f"'split' of {r.what}: {exc}")
        return None


def _retry(r: Reader) -> RetrySchedule:
    node = r.get("retry")
    if node is None or node.value is None:
        return RetrySchedule()
    if not node.is_map():
        r.error(node, "'retry' must be a mapping like {initial: 10s, give_up_after: 72h}")
        return RetrySchedule()
    sub = Reader(node, r.issues, f"retry of {r.what}")
    sub.check_keys(RETRY_KEYS)
    base = RetrySchedule()
    multiplier = base.multiplier
    m_node = sub.get("multiplier")
    if m_node is not None:
        value = m_node.value
        number = as_number(value.strip()) if isinstance(value, str) else value
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
            or number < 1
        ):
            sub.error(
                m_node,
                f"'multiplier' must be a number of at least 1, like 2, not {m_node.plain()!r}",
            )
        else:
            multiplier = float(number)
    return RetrySchedule(
        initial=sub.duration("initial", base.initial, "10s"),
        max_interval=sub.duration("max_interval", base.max_interval, "1h"),
        # zero: no retry at all, the event is dead at its first failure
        give_up_after=sub.duration("give_up_after", base.give_up_after, "72h", zero=True),
        multiplier=multiplier,
    )


def shown_url(url: str) -> str:
    """``url`` as a message may show it: any ``user:password@`` before its host as ``***@``,
    and any query or fragment left out (LeadSquared's own examples carry the keys there).

    A url written without its scheme (``api-in21.leadsquared.com/...?secretKey=...``, the
    error that says so quoted it whole, keys and all) is shown by the same rules."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    marks = [place for place in (rest.find("?"), rest.find("#")) if place >= 0]
    if marks:  # cut at the first: a '?' after a '#' is the fragment's, shown no more
        cut = min(marks)
        part = "query" if rest[cut] == "?" else "fragment"
        rest = f"{rest[:cut]} ({part} not shown)"
    authority, slash, path = rest.partition("/")
    start = f"{scheme}{sep}"
    if "@" not in authority:
        return f"{start}{rest}"
    return f"{start}***@{authority.rpartition('@')[2]}{slash}{path}"


#: The path the dispatcher adds to a target's url (``hub.dispatch.leadsquared.CAPTURE_PATH``).
CAPTURE_PATH = "/v2/LeadManagement.svc/Lead.Capture"


def _unusable_url(url: str) -> str | None:
    """Why an http(s) ``url`` names no host to call, or None. Such a url passed check (one
    with an unclosed ``[`` made it end in a traceback), and every call then failed as an
    invalid url, which paused the target."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "holds a space or a control character"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # a ValueError when it is not a number from 0 to 65535
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "names port 0"
    return uncallable_ipv4(parts.hostname)


def _api_path_in(url: str, *, shortest: int = 3) -> str | None:
    """The end of ``url``'s path that is the start of Lead.Capture's own path, of at least
    ``shortest`` of its parts (``/v2/LeadManagement.svc``, or all of it, as LeadSquared's
    examples write the url; ``shortest=2`` takes a bare ``/v2`` too), any letter case; None
    when there is none. The dispatcher adds that path to the url, so with it already there no
    call could reach Lead.Capture; a gateway's own prefix (``/lsq``) is fine."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    parts = CAPTURE_PATH.split("/")  # ['', 'v2', 'LeadManagement.svc', 'Lead.Capture']
    for end in range(len(parts), shortest - 1, -1):
        tail = "/".join(parts[:end])
        if path.lower().endswith(tail.lower()):
            return path[len(path) - len(tail) :]
    return None


#: A target's keys go in access_key and secret_key (sent as headers); where they do not go.
KEYS_NOT_IN_URL = "LeadSquared takes its keys in access_key and secret_key, sent as headers"


def _query_or_fragment(url: str) -> str:
    """The error for a target ``url`` with a query or a fragment, worded for the one it has
    first (the fix is one: the host alone, the keys in their own settings)."""
    fix = (
        "Write the account's API host alone, like https://api-in21.leadsquared.com, and the "
        "keys as access_key: ${LSQ_ACCESS_KEY} and secret_key: ${LSQ_SECRET_KEY}"
    )
    shown = shown_url(url)
    if shown.endswith("(fragment not shown)"):
        return (
            f"'url' {shown!r} has a fragment (a '#' and what follows): the hub adds "
            "Lead.Capture's path to the url, which after a '#' would never be sent, so every "
            f"call would go to the host's root; {KEYS_NOT_IN_URL}, not in the url. {fix}"
        )
    return (
        f"'url' {shown!r} has a query: the hub adds Lead.Capture's path to the url, and a "
        f"query there would be shown wherever the url is; {KEYS_NOT_IN_URL} (LeadSquared's "
        f"examples put accessKey and secretKey in the query). {fix}"
    )


def build_target(node: Node, r: Reader) -> Target | None:
    """A :class:`Target` from a ``kind: target`` document, or ``None`` when unusable."""
    name = check_name(r, "target")
    r.check_keys(TARGET_KEYS)
    url = r.text("url", required=True)
    url = lower_scheme(str(url)) if url is not None else None
    if url is not None and not str(url).startswith(("http://", "https://")):
        r.error(
            r.get("url"),
            f"'url' {shown_url(str(url))!r} must start with https://, like "
            "https://api-in21.leadsquared.com",
        )
    elif url is not None and (problem := _unusable_url(str(url))) is not None:
        r.error(
            r.get("url"),
            f"'url' {shown_url(str(url))!r} {problem}, so no call could reach Lead.Capture; "
            "write the account's API host, like https://api-in21.leadsquared.com",
        )
    elif url is not None and "@" in urllib.parse.urlsplit(str(url)).netloc:
        r.error(
            r.get("url"),
            f"'url' {shown_url(str(url))!r} holds a user name or password: it would be "
            f"shown wherever the url is (check, logs, events); {KEYS_NOT_IN_URL}; a proxy's "
            "credentials go in HTTPS_PROXY. Write the url without them, like "
            "https://api-in21.leadsquared.com",
        )
    elif url is not None and any(mark in str(url) for mark in "?#"):
        r.error(r.get("url"), _query_or_fragment(str(url)))
    elif url is not None and (named := _api_path_in(str(url))) is not None:
        r.error(
            r.get("url"),
            f"'url' {str(url)!r} ends in {named!r}, Lead.Capture's own path or its start, "
            f"which the hub adds to the url itself ({CAPTURE_PATH}): every call would go to "
            f"{str(url).rstrip('/') + CAPTURE_PATH!r}, be refused (404) and pause the target. "
            "Write the account's API host alone, like https://api-in21.leadsquared.com",
        )
    elif url is not None:
        _warn_of_url(r, str(url))
    rate_limit = DEFAULT_RATE_LIMIT
    rate_node = r.get("rate_limit")
    if rate_node is not None and rate_node.value is not None:
        try:
            rate_limit = parse_rate_limit(str(rate_node.plain()))  # type: ignore[assignment]
        except UnitError as exc:
            r.error(rate_node, f"'rate_limit' of {r.what}: {exc}")
    access_key = _header_key(r, "access_key", "x-LSQ-AccessKey")
    secret_key = _header_key(r, "secret_key", "x-LSQ-SecretKey")
    timeout = r.duration("timeout", 10.0, "10s")
    if timeout > MAX_TIMEOUT:
        r.error(
            r.get("timeout"),
            f"'timeout' of {r.what} must be at most {MAX_TIMEOUT:g}s, like 10s, not "
            f"{timeout:g}s: Lead.Capture answers in seconds, and the rate limit shared with "
            "other processes counts a call for at most twice its timeout",
        )
        timeout = MAX_TIMEOUT
    retry = _retry(r)
    concurrency = _concurrency(r)
    account = r.text("account")
    if account is not None and not str(account).strip():
        r.error(
            r.get("account"),
            f"'account' of {r.what} is empty: name the LeadSquared account its keys belong "
            "to (the same name in every target of that account), like account: acme, or "
            "leave it out",
        )
        account = None
    if name is None or url is None:
        return None
    return Target(
        name=name,
        url=str(url).rstrip("/"),
        access_key=access_key or Secret(""),
        secret_key=secret_key or Secret(""),
        rate_limit=rate_limit,
        timeout=timeout,
        retry=retry,
        concurrency=concurrency,
        account=str(account).strip() if account is not None else None,
        origin=Origin(node.file, node.line),
    )


def _warn_of_url(r: Reader, url: str) -> None:
    """Warn of each doubt about a url ``check`` takes: a bare ``/v2`` at its end and plain
    ``http://`` off this machine are two mistakes, and one does not excuse the other (a
    gateway's ``http://gw.example.com/lsq/v2`` was warned of its ``/v2`` alone, while its
    keys crossed the network in the clear)."""
    if (named := _api_path_in(url, shortest=2)) is not None:
        # A bare /v2 may be a gateway's own prefix (https://gw.example.com/lsq/v2), so it is
        # a warning: refused, such a url could not be written at all.
        r.warn(
            r.get("url"),
            f"'url' {url!r} ends in {named!r}, the start of Lead.Capture's own path; "
            f"the hub adds {CAPTURE_PATH} after it, so every call goes to "
            f"{url.rstrip('/') + CAPTURE_PATH!r}. If that is not the gateway's path, "
            "write the url without it, like https://api-in21.leadsquared.com",
        )
    if _in_clear(url):
        r.warn(
            r.get("url"),
            f"'url' {url!r} is http://, so the keys sent with every call (and every "
            "lead) would cross the network unencrypted, and LeadSquared's API takes "
            "https:// only; write https://, like https://api-in21.leadsquared.com",
        )


def _in_clear(url: str) -> bool:
    """Whether ``url`` is ``http://`` to a host off this machine (:func:`is_loopback`): a
    local test double or standalone sandbox (``http://127.0.0.1:9000``) is called so,
    LeadSquared never."""
    if not url.startswith("http://"):
        return False
    return not is_loopback(urllib.parse.urlsplit(url).hostname or "")


def unsendable_char(value: str) -> str | None:
    """What in ``value`` an HTTP header cannot carry, the first such character named by its
    code point and place (never the value itself), or None: header values are printable
    ASCII and tabs here (httpx encodes them as ASCII and refuses other control characters)."""
    for place, char in enumerate(value, start=1):
        if not " " <= char <= "~" and char != "\t":
            kind = "a control character" if char.isascii() else "a character that is not ASCII"
            return f"{kind} (U+{ord(char):04X}) at character {place}"
    return None


def _set(r: Reader, key: str) -> str:
    """What a fix tells the user to set for ``key``: its one variable (``${LSQ_KEY}``), else
    "it"."""
    node = r.get(key)
    names = variables(node.raw) if node is not None else []
    return f"${{{names[0]}}}" if len(names) == 1 else "it"


def _bearer_token(r: Reader) -> Secret:
    """A LinkedIn or HubSpot endpoint's ``access_token``, sent as ``Authorization: Bearer``:
    one holding a character no header carries (a line break left in its file, a pasted
    ellipsis) is an error at its line. Taken before, every lead read failed before it left:
    a "network error" whose reason, logged and kept as each event's last error, quoted the
    header and so the token (httpx's error names the value), or a traceback each attempt."""
    secret = r.secret("access_token")
    if secret is None:
        return Secret("")
    bad = unsendable_char(secret.reveal())
    if bad is None:
        return secret
    r.error(
        r.get("access_token"),
        f"'access_token' of {r.what} holds {bad}, which the Authorization header it is sent "
        f"in cannot carry, so no lead could be read: set {_set(r, 'access_token')} to the "
        "token alone (a "
        "character pasted with it, or a line break left in its file, is not part of it)",
    )
    return Secret("")


def _header_key(r: Reader, key: str, header: str) -> Secret | None:
    """A target's key, sent in ``header``: one holding a character no header carries (a
    pasted ellipsis or curly quote, a line break left in its file) is an error at its line.
    Taken before, every call to the target failed before it left (the encoder's error, with
    a traceback, each second), and its events waited without a reason, never paused."""
    secret = r.secret(key)
    if secret is None:
        return None
    bad = unsendable_char(secret.reveal())
    node, where = r.get(key), _set(r, key)
    if bad is None:
        if secret.reveal() != secret.reveal().strip():
            # sent as is: LeadSquared's keys hold no space, so every call was a 401 (the
            # target paused) with no word of the space copied with the key
            r.warn(
                node,
                f"{key!r} of {r.what} starts or ends with a space or tab, which "
                f"LeadSquared's keys do not: every call would be refused (401); set {where} "
                "to the key without it",
            )
        return secret
    r.error(
        node,
        f"{key!r} of {r.what} holds {bad}, which the {header} header it is sent in cannot "
        f"carry, so no call could be made; LeadSquared's keys are ASCII: set {where} to the "
        "key as Settings > API and Webhooks shows it (a character pasted with it, or a line "
        "break left in its file, is not part of it)",
    )
    return None


def _concurrency(r: Reader) -> int | None:
    """``concurrency``: calls in flight at once to the target (None: the dispatcher's default)."""
    node = r.get("concurrency")
    if node is None or node.value is None:
        return None
    value = node.value
    number: int | None = None
    if not isinstance(value, bool | float | dict | list):
        try:
            number = int(str(value).strip())
        except ValueError:
            number = None
    if number is None or not 1 <= number <= MAX_CONCURRENCY:
        r.error(
            node,
            f"'concurrency' of {r.what} must be a whole number from 1 to {MAX_CONCURRENCY} "
            f"(calls in flight at once), not {node.raw or node.plain()!r}; like concurrency: 16",
        )
        return None
    return number


class SandboxSettingError(ValueError):
    """A ``LEADHUB_SANDBOX_*`` variable the embedded sandbox cannot be made with."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


def _sandbox_key(environ: Mapping[str, str], variable: str) -> Secret:
    """The embedded sandbox's key from ``variable`` (default ``sandbox``); a blank one is
    refused: the sandbox compares what a call sends with it, so an empty key lets in any
    call that sends an empty one."""
    value = environ.get(variable, "sandbox")
    if not value.strip():
        msg = (
            f"{variable} is empty: an empty key is matched by any call that sends an empty "
            "one, so it keeps nobody out of the embedded sandbox; give the key its callers "
            f"must send (unset {variable} for the default, sandbox)"
        )
        raise SandboxSettingError(variable, msg)
    bad = unsendable_char(value)
    if bad is not None:
        msg = (
            f"{variable} holds {bad}: the dispatcher sends the key in a header, which cannot "
            "carry it, so no lead could reach the embedded sandbox; use printable ASCII "
            f"(unset {variable} for the default, sandbox)"
        )
        raise SandboxSettingError(variable, msg)
    return Secret(value)


def sandbox_target(environ: Mapping[str, str]) -> Target:
    """The embedded sandbox, the ``default`` target when none is configured.

    Raises:
        SandboxSettingError: a blank key variable.
        UnitError: ``LEADHUB_SANDBOX_RATE_LIMIT`` is not a rate limit.
    """
    return Target(
        name="default",
        url="",
        sandbox=True,
        access_key=_sandbox_key(environ, "LEADHUB_SANDBOX_ACCESS_KEY"),
        secret_key=_sandbox_key(environ, "LEADHUB_SANDBOX_SECRET_KEY"),
        rate_limit=parse_rate_limit(environ.get("LEADHUB_SANDBOX_RATE_LIMIT", "25/5s")),
    )
