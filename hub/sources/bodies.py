"""Request bodies to documents: JSON, form-encoded and multipart, with clear 400/415 reasons.

* JSON (``application/json``, ``*/*+json``, ``text/json``, ``text/plain`` and a
  missing Content-Type) is parsed with orjson. orjson turns integers beyond the
  64-bit range into floats, silently losing digits, so a body holding a run of 19
  or more digits where a JSON number can start (after ``[ , :``, whitespace, a sign
  or an exponent mark; digits inside strings such as ids do not count) is parsed
  with the standard library instead, and any integer outside [-2^63, 2^64) is kept
  as its decimal string (ids stay exact; every stored document stays serialisable).
  :func:`parse` also says whether the document is exactly ``orjson.loads(body)``, so
  the store can keep the body alone instead of a second copy of the document.
* ``application/x-www-form-urlencoded`` and ``multipart/form-data`` become a flat
  object; a key sent several times becomes a list of its values, in order (a byte order
  mark before a form body is dropped, not read into its first key). A form-typed
  body that is a JSON object or array (``curl -d '{...}'``) is read as JSON
  (:func:`_json_despite_form`). A value
  that is a JSON object or array (Unbounce's ``data.json``, Jotform's
  ``rawRequest``) is parsed into it; any other value stays the string it was.
  Multipart file parts become ``{"filename", "content_type", "size"}`` (their
  contents are kept in the raw body only).
* Anything else answers 415; a body that cannot be parsed answers 400. A JSON body
  that is not UTF-8, or a form body its charset does not decode (raw or percent-escaped),
  or a multipart text part (decoded with the charset its own Content-Type names, else the
  one the form's ``_charset_`` field names (RFC 7578 section 4.6), else the request's, else
  UTF-8), says so, which charset, and which byte where; a ``text/plain``
  one, or one without a Content-Type, that is not JSON says what it was sent as and what
  the hub accepts. A bad multipart body's reason names bytes as characters and where they
  are in the body.

python-multipart logs a warning on its own logger for every error it then raises;
the parser here logs to :data:`_MULTIPART_LOG`, which writes nothing, so that a bad
multipart body gives only the hub's own 400 line (which names the endpoint and carries
the same words), not a stray library line beside it.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

import msgspec
import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from hub.sources.base import BodyError

_JSON_TYPES = frozenset({"", "application/json", "text/json", "text/plain"})
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
#: Maps every digit to "0" and every other byte to "x", so runs of digits are found by
#: substring search (far faster than a regular expression over a digit-rich body).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_RUN = b"0" * 19
#: Bytes after which a JSON number (or its exponent's digits) can start.
_NUMBER_LEAD = frozenset(b"[,: \t\n\r\f\v+eE")
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
MAX_FIELDS = 10_000
#: Deepest nesting of arrays and objects a JSON body may have. orjson reads 1024 levels but
#: writes 254, and a stored document may sit inside an envelope: deeper bodies are a 400
#: (no sender nests lead data anywhere near this deep).
MAX_DEPTH = 200
#: A JSON string (skipped whole, brackets inside it do not count) or a bracket. A string
#: that is never closed runs to the end of the body (``\Z``): without that, a scan that
#: found no closing quote failed and started again at the next quote, so a body of escaped
#: quotes (``"x\"x\"...``, never closed) cost time in the square of its length (60 KB held
#: the store's writer, and with it every endpoint's deliveries, 11.7 s). The possessive
#: ``*+`` and DOTALL keep each string one pass: it never backtracks, and a backslash before
#: any byte (a newline too) is an escape.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[][{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
_TOO_DEEP = f"body nests arrays and objects more than {MAX_DEPTH} levels deep"


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """The lower-cased media type and its parameters (names lower-cased)."""
    if not content_type:
        return "", {}
    main, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    if rest:
        _, raw = parse_options_header("x;" + rest)
        for key, value in raw.items():
            params[key.decode("latin-1").lower()] = value.decode("latin-1")
    return main.strip().lower(), params


def is_json_type(mtype: str) -> bool:
    """Whether a media type is taken as JSON."""
    return mtype in _JSON_TYPES or (mtype.startswith("application/") and mtype.endswith("+json"))


def _int_or_text(text: str) -> int | str:
    if len(text) > 21:  # more than 20 digits: beyond 64 bits (and int() refuses 4,301 or more)
        return text
    value = int(text)
    return value if _INT_MIN <= value <= _INT_MAX else text


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not valid JSON"
    raise ValueError(msg)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: orjson refuses it, and would store it as null
        msg = f"number {text[:30]} is out of range"
        raise ValueError(msg)
    return value


def too_deep(body: bytes, openers: int | None = None) -> bool:
    """Whether the JSON in ``body`` nests arrays and objects more than :data:`MAX_DEPTH` deep.

    Counting brackets (C speed; ``openers`` when the caller has counted them) settles almost
    every body; only one with more brackets than the limit is scanned, its strings skipped.
    """
    if openers is None:
        openers = body.count(b"[") + body.count(b"{")
    if openers <= MAX_DEPTH:
        return False
    depth = 0
    for found in _STRUCTURE.finditer(body):
        char = found.group()[0]
        if char in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char != 0x22:  # a closing bracket ('"' starts a skipped string)
            depth -= 1
    return False


class Parsed(NamedTuple):
    """A parsed body, and whether the document is exactly ``orjson.loads(body)``."""

    document: Any
    #: True when reading the body back with ``orjson.loads`` gives this very document.
    is_body: bool
    #: True for a JSON body sent as a form, read as JSON (:func:`_json_despite_form`).
    form_as_json: bool = False


def _long_number(body: bytes) -> bool:
    """Whether ``body`` may hold a number with 19+ digits (digits inside strings mostly do not).

    A false hit only costs time (the exact parser); a miss would lose digits.
    """
    return _long_run(body, body.translate(_DIGITS_AS_ZERO))


def _long_run(body: bytes, marks: bytes) -> bool:
    at = marks.find(_RUN)
    while at >= 0:
        if at > 0 and body[at - 1] == 0x2D:  # "-": a sign, or an exponent's
            at -= 1
        if at == 0 or body[at - 1] in _NUMBER_LEAD:
            return True
        end = marks.find(b"x", at + 1)
        if end < 0:
            return False
        at = marks.find(_RUN, end)
    return False


#: Like _DIGITS_AS_ZERO, but "e"/"E" become "e" and signs "s": finds 3-digit exponents.
_NUMBER_MARKS = bytes(
    0x30
    if 0x30 <= b <= 0x39
    else 0x65
    if b in b"eE"
    else 0x73
    if b in b"+-"
    else 0x5B  # "[" and "{" both become "[": one count tells the openers (too_deep)
    if b in b"[{"
    else 0x78
    for b in range(256)
)


class Skimmer:
    """Checks a JSON object body and reads one top-level key, without building the document.

    For a single-lead sender the document is the body itself: ingest needs only to know
    that the body parses (else 400) and the value of its id key. msgspec can check the
    JSON while skipping every value it is not asked for, allocating nothing for them: about
    4.5 µs with the checks below for a 3 KB Typeform body (the decode itself 1.6 µs), where
    orjson takes 7–9 µs to build the document and more to free its few hundred objects.

    The skim answers only when its answer is certain to be the full parser's: an object
    body whose bytes are ASCII or valid UTF-8 (msgspec does not check skipped strings),
    with no number the full parser treats specially (19+ digit runs, see
    :func:`parse_json_marked`) or that may overflow a float (a 3-digit exponent, which
    orjson rejects). Anything else returns None and goes to :func:`parse`.
    """

    def __init__(self, key: str | None) -> None:
        fields: list[tuple[str, Any, Any]] = [] if key is None else [("value", Any, None)]
        rename = None if key is None else {"value": key}
        shape = msgspec.defstruct("Skim", fields, rename=rename)
        self._key = key
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(shape)

    def skim(self, content_type: str | None, body: bytes) -> tuple[Any] | None:
        """``(value at the key,)`` (None when absent) if the body is surely a JSON object.

        None when the full parser must decide: not a JSON content type, not an object,
        invalid, or bytes the skim cannot vouch for (see the class docstring).
        """
        if not is_json_type(_media(content_type)[0]):
            return None
        if not body.isascii():
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                return None
        marks = body.translate(_NUMBER_MARKS)
        # (rfind: CPython's reverse search is the faster one on these digit-rich marks)
        if marks.rfind(b"0e000") >= 0 or marks.rfind(b"0es000") >= 0 or _long_run(body, marks):
            return None
        if too_deep(body, marks.count(b"[")):
            return None
        try:
            found = self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return None
        return (None if self._key is None else found.value,)


def _undecodable(what: str, charset: str, byte: int, offset: int, how: str = "") -> str:
    """``WHAT is not valid CHARSET (byte 0xNN at offset N[, HOW])``: the words every reason
    uses for bytes their charset does not decode (a JSON body's UTF-8, a form's charset)."""
    return f"{what} is not valid {charset} (byte 0x{byte:02x} at offset {offset}{how})"


def _not_utf8(body: bytes) -> BodyError | None:
    """The 400 for a body that is not UTF-8 (which JSON must be), naming the first bad
    byte and its offset; None when it is UTF-8.

    orjson reports such a body as "str is not valid UTF-8: surrogates not allowed" at
    char 0, its decoder's words and not where the byte is: a Latin-1 "José" says neither.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = _undecodable("body", "UTF-8", body[exc.start], exc.start)
        return BodyError(
            400, f"{reason}; JSON must be sent as UTF-8, not Latin-1 or another charset"
        )
    return None


#: A UTF-8 byte order mark: RFC 8259 forbids a sender to write one before JSON but lets a
#: reader ignore it, and senders do write one (text written by .NET's UTF-8 encoder, a
#: payload saved by Windows Notepad and posted with curl --data-binary @file).
_BOM = b"\xef\xbb\xbf"
#: The same mark in decoded text: kept before a form body, it began the first key
#: (``\ufeffemail``) and that field's path found nothing.
_TEXT_BOM = _BOM.decode()


def parse_json_marked(body: bytes) -> Parsed:
    """Like :func:`parse_json`, saying whether orjson alone parsed the document.

    A byte order mark before the JSON is skipped (the document is then not
    ``orjson.loads(body)``, which refuses it, so it is kept beside the body): refused with a
    400, such a sender's every lead was lost, few senders retrying a 4xx.
    """
    if body.startswith(_BOM):
        return Parsed(parse_json_marked(body[len(_BOM) :]).document, False)
    if not _long_number(body):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if not body.strip():
                raise BodyError(400, "empty body; expected a JSON document") from None
            raise (_not_utf8(body) or BodyError(400, f"body is not valid JSON ({exc})")) from None
        if too_deep(body):
            raise BodyError(400, _TOO_DEEP)
        return Parsed(doc, True)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(body) or BodyError(400, "body is not valid UTF-8") from None
    try:
        doc = json.loads(
            text,
            parse_int=_int_or_text,
            parse_float=_finite_float,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, f"body is not valid JSON ({type(exc).__name__}: {exc})") from None
    if too_deep(body):
        raise BodyError(400, _TOO_DEEP)
    try:  # what orjson refuses to read, it refuses to write: an unpaired \ud800 escape
        orjson.dumps(doc)
    except TypeError as exc:
        raise BodyError(400, f"body is not valid JSON ({exc})") from None
    return Parsed(doc, False)


def parse_json(body: bytes) -> Any:
    """A JSON document from ``body``; integers beyond 64 bits become strings.

    Raises:
        BodyError: 400 when the body is empty or not JSON.
    """
    return parse_json_marked(body).document


def _maybe_json(value: str) -> Any:
    """``value`` parsed when it holds a JSON object or array, else ``value`` itself."""
    stripped = value.strip()
    if len(stripped) < 2 or stripped[0] not in "{[" or stripped[-1] not in "}]":
        return value
    try:
        parsed = parse_json(stripped.encode("utf-8", "surrogatepass"))
    except (BodyError, UnicodeEncodeError):
        return value
    return parsed if isinstance(parsed, dict | list) else value


def _flat(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Pairs to an object: repeated keys become lists; JSON-holding strings are parsed."""
    out: dict[str, Any] = {}
    repeated: set[str] = set()
    for key, raw in pairs:
        value = _maybe_json(raw) if isinstance(raw, str) else raw
        if key not in out:
            out[key] = value
        elif key in repeated:
            out[key].append(value)
        else:
            out[key] = [out[key], value]
            repeated.add(key)
    return out


#: A UTF-16 surrogate code point: no text holds one unpaired, and orjson writes none.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_unpaired(pairs: list[tuple[str, Any]], what: str, charset: str | None) -> None:
    """A 400 for a form or multipart field whose name or text value holds an unpaired
    surrogate once decoded (``charset``: the one named for the whole body, if any).

    UTF-7 (``+2DA-``) and ``unicode_escape`` (``\\ud800``) decode to one without an error, raw
    or percent-escaped: such a document could not be stored (orjson refuses to write it),
    and the delivery was a 500 (a 503 with the in-process writer) that its sender retried for
    good.

    Raises:
        BodyError: 400 naming the field, the code point and the charset.
    """
    for key, value in pairs:
        for text in (key, value) if isinstance(value, str) else (key,):
            found = None if text.isascii() else _SURROGATE.search(text)
            if found is None:
                continue
            named = f" as {charset[:40]}" if charset else ""
            msg = (
                f"{what} field {key[:100]!r} decodes{named} to an unpaired surrogate "
                f"(U+{ord(found.group()):04X}), which is not text; send the body as UTF-8"
            )
            raise BodyError(400, msg)


#: A stretch of a form body's text that urllib unescapes and decodes as one: ASCII, up to
#: a field's ``&`` or ``=`` (its non-ASCII characters are decoded already).
_FORM_RUN = re.compile(r"[^&=\x80-\U0010ffff]+")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


#: Characters of a form field's ASCII stretch unescaped at a time. urllib's unquote splits
#: the whole stretch at every ``%`` and keeps a bytes object per piece: a field of 300,000
#: escapes (a 900 KB body) grew the process by 67 MB while it was read.
_UNESCAPE_PIECE = 8192
#: A stretch of ASCII, which urllib unescapes (the rest of a field is kept as it is).
_ASCII_RUN = re.compile(r"[\x00-\x7f]+")


def _unescaped(run: str, pieces: list[tuple[int, int]] | None = None) -> bytes:
    """``unquote_to_bytes(run)``, a piece of :data:`_UNESCAPE_PIECE` characters at a time;
    each piece's start in ``run`` and in the bytes is added to ``pieces`` when given.

    A piece is never cut within two characters after a ``%`` unless it is cut before a
    ``%``: that one's escape then stays whole, and one cut off before it had a ``%`` for a
    hex digit, which no escape has (it is kept as written either way).
    """
    if len(run) <= _UNESCAPE_PIECE:
        if pieces is not None:
            pieces.append((0, 0))
        return unquote_to_bytes(run)
    out = bytearray()
    start = 0
    while start < len(run):
        end = start + _UNESCAPE_PIECE
        if end < len(run):
            cut = run.find("%", end - 2, end)
            if cut > start:
                end = cut
        if pieces is not None:
            pieces.append((start, len(out)))
        out += unquote_to_bytes(run[start:end])
        start = end
    return bytes(out)


def _unquote(text: str, charset: str) -> str:
    """urllib's ``unquote(text, charset, "strict")``, its escapes unescaped by pieces
    (:func:`_unescaped`): each ASCII stretch unescaped and decoded, the rest kept.

    Raises:
        UnicodeDecodeError: an ASCII stretch's escapes are not valid ``charset``.
    """
    if "%" not in text:
        return text
    out: list[str] = []
    done = 0
    for run in _ASCII_RUN.finditer(text):
        out.append(text[done : run.start()])
        out.append(_unescaped(run.group()).decode(charset))
        done = run.end()
    out.append(text[done:])
    return "".join(out)


def _form_pairs(text: str, charset: str) -> list[tuple[str, str]]:
    """urllib's ``parse_qsl(text, keep_blank_values=True, encoding=charset,
    errors="strict")`` (fields split at ``&``, empty ones skipped, ``+`` a space), its
    escapes unescaped by :func:`_unquote`."""
    pairs: list[tuple[str, str]] = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append(
            (_unquote(name.replace("+", " "), charset), _unquote(value.replace("+", " "), charset))
        )
    return pairs


#: Escapes of bytes over 0x7f, one after another: in :data:`_ASCII_SAFE` charsets the
#: only bytes of a form's text that can fail to decode (ASCII is one byte there, that no
#: other byte's character holds), and a character's bytes are such a run.
_HIGH_ESCAPES = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")


def _escaped_fault(text: str, charset: str) -> tuple[int, int, str] | None:
    """The first percent-escaped byte of a form body's ``text`` that ``charset`` does not
    decode: ``(byte, index in text, its escape)``; None when none is found.

    In :data:`_ASCII_SAFE` charsets (UTF-8 and the like) only the runs of escapes of high
    bytes are decoded, not the whole text unescaped again: a bad escape after a mebibyte of
    good ones was found in about twice the time the body took to read, now in a little more."""
    try:
        safe = codecs.lookup(charset).name in _ASCII_SAFE
    except LookupError:
        safe = False
    if safe:
        for run in _HIGH_ESCAPES.finditer(text):
            raw = bytes.fromhex(run.group().replace("%", ""))
            try:
                raw.decode(charset)
            except UnicodeDecodeError as exc:
                at = run.start() + 3 * exc.start
                return raw[exc.start], at, text[at : at + 3]
        return None
    for run in _FORM_RUN.finditer(text):
        chunk = run.group()
        if "%" not in chunk:
            continue
        pieces: list[tuple[int, int]] = []
        raw = _unescaped(chunk, pieces)
        try:
            raw.decode(charset)
        except UnicodeDecodeError as exc:
            # from the start of the piece it is in (a byte at a time from the chunk's start
            # took 40 ms for a bad escape after 349,000 good ones)
            at, byte = next((t, b) for t, b in reversed(pieces) if b <= exc.start)
            for _ in range(exc.start - byte):  # each byte before it: an escape, or a character
                at += 3 if _ESCAPE.match(chunk, at) else 1
            return raw[exc.start], run.start() + at, chunk[at : at + 3]
        except ValueError:  # (a codec failing otherwise, as punycode may: no byte to name)
            return None
    return None


def _charset_fix(charset: str | None, where: str = "the Content-Type") -> str:
    """What a sender whose form body ``charset`` (None: not named; else named by ``where``)
    does not decode may do."""
    if charset is None:
        return (
            "UTF-8 is taken when the Content-Type names no charset: send UTF-8, or name the "
            "charset in the Content-Type"
        )
    return f"{charset[:40]} is the charset {where} names: send that, or name the right one"


def _raw_undecodable(body: bytes, charset: str | None, exc: UnicodeDecodeError) -> str:
    """The 400 reason for a form body whose bytes ``charset`` (None: UTF-8) does not decode."""
    named = charset[:40] if charset else "UTF-8"
    return (
        f"{_undecodable('form body', named, body[exc.start], exc.start)}; {_charset_fix(charset)}"
    )


def _escape_undecodable(text: str, charset: str | None) -> str:
    """The 400 reason for a form body (``text``, decoded) with a percent-escape ``charset``
    (None: UTF-8) does not decode: which escape, its byte and offset in the body."""
    tried, named = charset or "utf-8", charset[:40] if charset else "UTF-8"
    fault = _escaped_fault(text, tried)
    if fault is None:  # (not expected: the escapes are split as _form_pairs splits them)
        return f"form body has a percent-escape that is not valid {named}; {_charset_fix(charset)}"
    byte, index, escape = fault
    try:
        offset = len(text[:index].encode(tried))
    except UnicodeError:  # (a text decoded with ``tried`` encodes back, but be safe)
        offset = index
    how = f", escaped as {escape}" if escape.startswith("%") else ""
    reason = _undecodable("form body", named, byte, offset, how)
    return f"{reason}; {_charset_fix(charset)}"


def parse_form(body: bytes, charset: str | None = None) -> dict[str, Any]:
    """A flat object from an ``application/x-www-form-urlencoded`` body in ``charset``
    (the Content-Type's; None: it names none, and UTF-8 is taken)."""
    charset = charset or None  # (an empty charset= names none)
    tried = charset or "utf-8"
    # Percent-escapes are the rule, but some senders post raw UTF-8 (browsers' parser,
    # WHATWG's, takes it): decode the bytes with the charset first, then the escapes.
    text = _decoded_or_refused(
        body,
        tried,
        "form body",
        "form body's Content-Type names",
        lambda exc: _raw_undecodable(body, charset, exc),
    ).removeprefix(_TEXT_BOM)  # a byte order mark is no part of the first field's name
    if text.count("&") >= MAX_FIELDS:
        raise BodyError(400, f"form body has more than {MAX_FIELDS} fields")
    try:
        pairs = _form_pairs(text, tried)
    except UnicodeDecodeError:
        raise BodyError(400, _escape_undecodable(text, charset)) from None
    except ValueError as exc:
        raise BodyError(400, f"form body cannot be decoded ({type(exc).__name__})") from None
    _refuse_unpaired(pairs, "form body", tried)
    return _flat(list(pairs))


#: The logger given to python-multipart's parser: it warns of each error it raises, which
#: the 400 reports (``multipart body cannot be parsed (...)``), so its lines are dropped.
_MULTIPART_LOG = logging.getLogger("hub.sources.bodies.multipart")
_MULTIPART_LOG.propagate = False
_MULTIPART_LOG.addHandler(logging.NullHandler())
_MULTIPART_LOG.setLevel(logging.CRITICAL + 1)


class _Text(NamedTuple):
    """A multipart text part's value as sent: its bytes, and the charset its own
    Content-Type names (None: it names none)."""

    data: bytes
    charset: str | None


class _Parts:
    """Collects multipart parts through python-multipart's callbacks; refuses a part past
    :data:`MAX_FIELDS` as it begins. Counted once the body was parsed whole, a 1 MiB body of
    20,000 tiny parts cost 0.14 s of the event loop to be refused (a 64 MiB one: 9 s and
    280 MB), twice what the parts the limit lets in cost."""

    def __init__(self) -> None:
        #: Each part's name and value: a file's summary, or a text part's bytes (decoded
        #: once every part is read, see :func:`_decoded`).
        self.pairs: list[tuple[str, Any]] = []
        self.ended = False
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data: list[bytes] = []

    def on_part_begin(self) -> None:
        if len(self.pairs) >= MAX_FIELDS:  # (this one is past the limit)
            raise BodyError(400, f"multipart body has more than {MAX_FIELDS} parts")
        self._headers = {}
        self._data = []

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = b""
        self._value = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])

    def on_part_end(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise BodyError(400, "a multipart part has no name in its Content-Disposition")
        data = b"".join(self._data)
        key = name.decode("utf-8", "replace")
        if b"filename" in options:
            value: Any = {
                "filename": options[b"filename"].decode("utf-8", "replace"),
                "content_type": self._headers.get(b"content-type", b"").decode("latin-1"),
                "size": len(data),
            }
        else:
            _, part = parse_options_header(self._headers.get(b"content-type", b""))
            charset = part.get(b"charset")
            value = _Text(data, charset.decode("latin-1") if charset else None)
        self.pairs.append((key, value))

    def on_end(self) -> None:
        self.ended = True


#: python-multipart names a byte by its number ("Expected boundary character 88, got 89",
#: "(found 90)"): the word before such a number, and the number.
_BYTE_NUMBER = re.compile(r"\b(character|got|found) (\d{1,3})\b")
#: ...and says where as an index into what it was given, in several forms: replaced by the
#: offset in the body as received.
_WHERE = re.compile(r" (?:at index \d+|at \d+|\(\d+\))$")


def _shown_byte(byte: int) -> str:
    """A byte as a reason names it: ``'X'`` for printable ASCII (``"'"`` for a quote; a
    backslash as itself, not doubled as repr() writes it), else ``0xNN``."""
    if not 0x20 <= byte < 0x7F:
        return f"0x{byte:02x}"
    char = chr(byte)
    return f'"{char}"' if char == "'" else f"'{char}'"


def _multipart_error(exc: ValueError, skipped: int) -> str:
    """python-multipart's words for ``exc``, readable: bytes shown as characters, not as
    Python numbers, and the offset in the body (``skipped``: the preamble cut off before
    parsing) instead of its own index into what it was given."""
    message = _BYTE_NUMBER.sub(
        lambda m: f"{m[1]} {_shown_byte(int(m[2]))}" if int(m[2]) < 256 else m[0], str(exc)
    )
    offset = getattr(exc, "offset", -1)
    if isinstance(offset, int) and offset >= 0:
        message = f"{_WHERE.sub('', message)} at offset {offset + skipped}"
    return message


def _decoded(name: str, text: _Text, charset: str | None, by_field: bool = False) -> str:
    """A multipart text part's value, decoded with the charset its own Content-Type names,
    else ``charset`` (the form's ``_charset_`` field's when ``by_field``, else the request's
    Content-Type's; None: UTF-8).

    A value its charset does not decode is a 400 naming the field, the byte and where it is
    in the value, as a form body's is: decoded with replacement characters instead, a
    Latin-1 "José" was answered 200, stored and sent on with U+FFFD for its "é".

    Raises:
        BodyError: 400 for a value its charset does not decode, or a charset not known.
    """
    named = text.charset or charset or None
    field = f"multipart field {name[:100]!r}"
    by_field = by_field and not text.charset
    where = f"the {CHARSET_FIELD} field" if by_field else "the Content-Type"

    def undecodable(exc: UnicodeDecodeError) -> str:
        shown = named[:40] if named else "UTF-8"
        reason = _undecodable(field, shown, text.data[exc.start], exc.start, " of its value")
        return f"{reason}; {_charset_fix(named, where)}"

    named_by = f"the form's {CHARSET_FIELD} field names" if by_field else f"{field} names"
    return _decoded_or_refused(text.data, named or "utf-8", field, named_by, undecodable)


#: The field naming the charset of a multipart form's text parts that name none of their
#: own (RFC 7578 section 4.6; browsers send it when the form has a hidden ``_charset_``).
CHARSET_FIELD = "_charset_"


def _form_charset(pairs: list[tuple[str, Any]]) -> str | None:
    """The charset the form's :data:`CHARSET_FIELD` text part names (its first), or None."""
    for key, value in pairs:
        if key == CHARSET_FIELD and isinstance(value, _Text):
            return value.data.decode("latin-1").strip() or None
    return None


def _decoded_or_refused(
    data: bytes,
    charset: str,
    what: str,
    named_by: str,
    undecodable: Callable[[UnicodeDecodeError], str],
) -> str:
    """``data`` decoded with ``charset``, or a 400: ``undecodable``'s reason for a byte it
    does not decode; ``named_by`` (``form body's Content-Type names``) the charset, for one
    not known; ``what`` (``form body``) cannot be decoded, for a codec's own failure."""
    try:
        return data.decode(charset)
    except UnicodeDecodeError as exc:
        raise BodyError(400, undecodable(exc)) from None
    except LookupError:
        msg = f"{named_by} charset {charset[:40]!r}, which the hub does not know"
        raise BodyError(400, msg) from None
    except ValueError as exc:  # a codec's own failure (punycode, undefined): no byte to name
        msg = f"{what} cannot be decoded as {charset[:40]} ({type(exc).__name__})"
        raise BodyError(400, msg) from None


def parse_multipart(
    body: bytes, boundary: str | None, charset: str | None = None
) -> dict[str, Any]:
    """A flat object from a ``multipart/form-data`` body; text parts decoded with the
    charset their own Content-Type names, else the one the form's ``_charset_`` field
    names, else ``charset`` (the request's Content-Type's; None: UTF-8)."""
    if not boundary:
        raise BodyError(400, "multipart/form-data without a boundary parameter")
    parts = _Parts()
    callbacks: Any = {
        name: getattr(parts, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_end",
        )
    }
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    skipped = 0
    if not body.startswith(delimiter):  # a preamble (RFC 2046 allows one): skip it
        first = body.find(b"\r\n" + delimiter)
        if first >= 0:
            skipped = first + 2
            body = body[skipped:]
    try:
        parser = MultipartParser(boundary.encode("latin-1", "replace"), callbacks)
        parser.logger = _MULTIPART_LOG
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        reason = f"multipart body cannot be parsed ({_multipart_error(exc, skipped)})"
        raise BodyError(400, reason) from None
    if not parts.ended:
        raise BodyError(400, "multipart body ends before its closing boundary")
    form_charset = _form_charset(parts.pairs)
    pairs: list[tuple[str, Any]] = []
    for key, value in parts.pairs:
        if not isinstance(value, _Text):
            pairs.append((key, value))
        elif form_charset and key != CHARSET_FIELD:  # (its own name is ASCII, in any charset)
            pairs.append((key, _decoded(key, value, form_charset, by_field=True)))
        else:
            pairs.append((key, _decoded(key, value, charset)))
    _refuse_unpaired(pairs, "multipart body", None)
    return _flat(pairs)


def parse_body(content_type: str | None, body: bytes) -> Any:
    """The document in ``body`` according to ``content_type``.

    Raises:
        BodyError: 415 for an unsupported content type, 400 for a body that cannot be parsed.
    """
    return parse(content_type, body).document


#: media_type() of the Content-Type values seen (multipart ones carry a boundary each).
_MEDIA_TYPES: dict[str, tuple[str, dict[str, str]]] = {}


def _media(content_type: str | None) -> tuple[str, dict[str, str]]:
    key = content_type or ""
    found = _MEDIA_TYPES.get(key)
    if found is None:
        found = media_type(key)
        if found[0] != MULTIPART and len(_MEDIA_TYPES) < 256:
            _MEDIA_TYPES[key] = found
    return found


#: Types read as JSON although they do not say JSON (senders that mislabel it, or say
#: nothing): a body of one that is not JSON is told what the hub reads.
_LOOSE_JSON_TYPES = frozenset({"", "text/plain"})
_ACCEPTED = f"application/json, {FORM} or {MULTIPART}"


def _loosely_typed(mtype: str, reason: str) -> str:
    """``reason`` for a body of a :data:`_LOOSE_JSON_TYPES` type, saying what it was sent
    as and what the hub takes: the sender may have meant a form, or plain text."""
    if mtype:
        sent = f"sent as {mtype}, which the hub reads only as JSON (some senders label JSON so)"
    else:
        sent = "sent without a Content-Type, which the hub reads only as JSON"
    return f"{reason}; it was {sent}; the hub accepts {_ACCEPTED}, named in the Content-Type"


#: A body whose first byte other than JSON's whitespace opens an object or an array (after
#: a byte order mark, as ``curl -d @lead.json`` posts a file Notepad saved).
_JSON_START = re.compile(b"(?:" + _BOM + rb")?[ \t\r\n]*[{[]")


def _json_despite_form(body: bytes) -> Parsed | None:
    """A form-typed body that is a JSON object or array, read as JSON; else None.

    ``curl -d '{"email": ...}'`` sends ``application/x-www-form-urlencoded``, the most common
    mistake when testing a webhook by hand: read as a form, the body was one key (the JSON
    text) with an empty value, its event went dead, and posting the same bytes again as JSON
    was a duplicate (its delivery id is the body's hash), so the lead could not be had back.
    A real form body (``a=1&b=2``, escaped or not) never parses as a JSON object or array,
    so one that does is read as what it is; its ``delivery_received`` line says so. Only a
    body starting with ``{`` or ``[`` is tried: a form pays one anchored match.
    """
    if _JSON_START.match(body) is None:
        return None
    try:
        parsed = parse_json_marked(body)
    except BodyError:
        return None  # a form after all (or JSON the hub refuses: read as the form it says)
    return parsed._replace(form_as_json=True)


#: Charsets (as :func:`codecs.lookup` names them) in which each ASCII character of a form's
#: text is one byte, and no other byte reads as one: a field name of ASCII characters is
#: written in the text as each of them or its ``%XX`` escape, nothing else.
_ASCII_SAFE = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252"})
#: The most characters of a form's text one character of a field's value takes: its bytes
#: in UTF-8 (four at most), each ``%XX``-escaped.
_MOST_PER_CHAR = 12


def form_values(content_type: str | None, body: bytes, name: str, longest: int) -> list[Any] | None:
    """The values of the top-level fields called ``name`` (ASCII) of a form body, as
    :func:`parse` reads them (parsed when they hold JSON, as :func:`_flat` does), in order;
    each written in more than ``longest * 12`` characters (too long to be ``longest``
    characters) is left unread, as None; a value whose escapes its charset does not decode
    is None too (the full parser refuses the body). None when this cannot be told so
    cheaply: not a form, a charset other than UTF-8, ASCII, Latin-1 or cp1252, a JSON body
    sent as a form, more fields than the parser takes, a body the charset does not decode.

    A sender that puts a credential inside its body (Google's ``google_key``) is checked by
    it before its body is parsed (:meth:`hub.sources.google.GoogleSource.verify`): the other
    fields are neither unescaped nor decoded, which for a mebibyte of percent-escapes is
    most of a tenth of a second of the event loop (more to report a bad one at its end).
    """
    mtype, params = _media(content_type)
    if mtype != FORM:
        return None
    charset = params.get("charset") or "utf-8"
    try:
        if codecs.lookup(charset).name not in _ASCII_SAFE:
            return None
        text = body.decode(charset).removeprefix(_TEXT_BOM)
    except (LookupError, ValueError):  # (UnicodeDecodeError included: the parser's 400)
        return None
    if text.count("&") >= MAX_FIELDS or _json_despite_form(body) is not None:
        return None  # (the parser's 400; or JSON, as the parser reads it: cheap)
    found: list[Any] = []
    most = 3 * len(name)  # (each character of the name as itself or its %XX)
    for field in text.split("&"):
        written, _, value = field.partition("=")
        if len(written) > most or ("%" not in written and written != name):
            continue
        try:
            if _unquote(written.replace("+", " "), charset) != name:
                continue
        except ValueError:  # (a byte it does not decode: not the name; the parser's 400)
            continue
        if len(value) > longest * _MOST_PER_CHAR:
            found.append(None)
            continue
        try:
            found.append(_flat([(name, _unquote(value.replace("+", " "), charset))])[name])
        except ValueError:
            found.append(None)
    return found


def parse(content_type: str | None, body: bytes) -> Parsed:
    """:func:`parse_body`, also saying whether the document is exactly ``orjson.loads(body)``.

    Raises:
        BodyError: as :func:`parse_body`.
    """
    mtype, params = _media(content_type)
    if is_json_type(mtype):
        if mtype not in _LOOSE_JSON_TYPES:
            return parse_json_marked(body)
        try:
            return parse_json_marked(body)
        except BodyError as exc:
            raise BodyError(exc.status, _loosely_typed(mtype, exc.reason)) from None
    if mtype == FORM:
        return _json_despite_form(body) or Parsed(parse_form(body, params.get("charset")), False)
    if mtype == MULTIPART:
        return Parsed(parse_multipart(body, params.get("boundary"), params.get("charset")), False)
    shown = mtype or (content_type or "")
    if "," in mtype:  # (no media type holds a comma: the header came with several values)
        msg = (
            f"Content-Type names several types ({(content_type or '')[:200]!r}), as when the "
            f"header is sent more than once with different values; send it once, as one of "
            f"{_ACCEPTED}"
        )
        raise BodyError(415, msg)
    msg = f"unsupported content type {shown[:100]!r}; send {_ACCEPTED}"
    raise BodyError(415, msg)
