"""Field transforms: ``trim lower upper title phone join(SEP) first_word rest_words
date map({...}) string digits``.

A transform is written as a name (``trim``), a name with an argument in
parentheses (``join(;)``, ``map({home_loan: Home Loan})``), or, in a transform
list, a one-key mapping (``{join: "; "}``, ``{map: {a: b}}``). Parsing happens
at load (:func:`parse_transform`), so a typo is a ``check`` error, not a runtime
surprise.

At run time a transform takes the list of values a path found (arrays already
opened up) and returns a new list. ``join`` takes the whole list; every other
transform works on each value. A value a transform cannot handle (a phone number
that does not parse, a date it cannot read) is dropped and a warning recorded;
transforms never raise. An object (a JSON ``{...}`` the path found) is such a value
for every transform but ``string``, the one that writes it as JSON text: ``upper``
would otherwise upper-case its keys, ``join`` paste its JSON between the texts. An
attribute is not sent an object either, unless ``string`` made it text.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from hub.exceptions import HubError
from hub.mapping.values import INVISIBLE, is_blank, shown_text, to_text


class TransformError(HubError):
    """A transform is unknown or has a bad argument."""


#: The most warnings one attribute records in one mapping; further ones are summed up in
#: one more. A path may find a hundred thousand values a transform drops (a 640 KB body of
#: phones "1"), and each was a warning: one 8.9 MB ``event_mapped`` log line.
MAX_WARNINGS = 5


@dataclass(slots=True)
class Context:
    """What a transform may use besides the value: the mapping's region, a warning sink."""

    attribute: str
    default_region: str | None
    warnings: list[str] = field(default_factory=list)
    #: The JSONPath the attribute's values come from (None for a constant ``value``).
    path: str | None = None
    #: How many warnings each attribute has had (see :data:`MAX_WARNINGS`).
    counts: dict[str, int] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        count = self.counts.get(self.attribute, 0) + 1
        self.counts[self.attribute] = count
        if count <= MAX_WARNINGS:
            self.warnings.append(f"{self.attribute}: {message}")
        elif count == MAX_WARNINGS + 1:
            self.warnings.append(
                f"{self.attribute}: more of its values were left out too; only the first "
                f"{MAX_WARNINGS} are listed"
            )


ItemFunc = Callable[[Any, Any, Context], Any]


def _trim(value: Any, _arg: Any, _ctx: Context) -> Any:
    return to_text(value).strip()


def _lower(value: Any, _arg: Any, _ctx: Context) -> Any:
    return to_text(value).lower()


def _upper(value: Any, _arg: Any, _ctx: Context) -> Any:
    return to_text(value).upper()


def _title_word(word: str) -> str:
    if "-" not in word:  # (most words: no list of one part)
        return _title_part(word)
    return "-".join([_title_part(part) for part in word.split("-")])


def _title_part(part: str) -> str:
    """``part`` with its first letter upper-cased and the rest lowered; the first letter is
    the first character, or the first after opening punctuation (``(bob)``, ``"asha"``,
    ``¡hola``, which kept their letters lower-case: "Robert (bob) smith" gave "Robert (bob)
    Smith"). A digit first (``3rd``) is the first character, as before."""
    if part[:1].isalnum():  # the first character is the first letter (most parts)
        return part[0].upper() + part[1:].lower()
    start = 0
    while start < len(part) and not part[start].isalnum():
        start += 1
    if start == len(part):
        start = 0
    return part[:start] + part[start : start + 1].upper() + part[start + 1 :].lower()


def _title(value: Any, _arg: Any, _ctx: Context) -> Any:
    # Word by word (and hyphen by hyphen), unlike str.title(), which would turn "don't"
    # into "Don'T".
    return " ".join([_title_word(word) for word in to_text(value).split()])


def _first_word(value: Any, _arg: Any, _ctx: Context) -> Any:
    words = to_text(value).split()
    return words[0] if words else None


def _rest_words(value: Any, _arg: Any, _ctx: Context) -> Any:
    words = to_text(value).split()
    return " ".join(words[1:]) or None


def _string(value: Any, _arg: Any, _ctx: Context) -> Any:
    return to_text(value)


#: A number written as a float's text, ``9876543210.0`` (a phone column a spreadsheet or a
#: script read as numbers and wrote back): its ``.0`` is no digit of the number. (phonenumbers
#: takes the dot for punctuation: +91-98765432100 was sent, a digit the sender never had.)
_FLOAT_WRITTEN = re.compile(r"(\+?\d+)\.0+")


def _digits(value: Any, _arg: Any, _ctx: Context) -> Any:
    # Every digit written 0-9: a number typed on an Arabic, Persian or Devanagari keyboard
    # ("٩٨٧٦٥٤٣٢١٠") kept its own digits, which LeadSquared's phone and number fields (and
    # the sandbox's Phone) do not read as digits; the lead was refused.
    text = to_text(value)
    as_float = _FLOAT_WRITTEN.fullmatch(text.strip())  # "9876543210.0": its .0 is no digit
    if as_float is not None:
        text = as_float.group(1)
    return "".join(str(unicodedata.digit(ch)) for ch in text if ch.isdigit()) or None


#: What :func:`_format_phone` gives for text that is no phone number, by reason.
_NOT_PARSED = "not_parsed"
_WRONG_LENGTH = "wrong_length"
_LETTERS = "letters"


@functools.lru_cache(maxsize=4096)
def _format_phone(text: str, region: str | None) -> tuple[str | None, str | None, str | None]:
    """``(+CC-NSN, None, extension)`` for a phone number, else ``(None, reason, None)``.

    ``extension`` is the extension the text gave after the number (``ext. 123``, ``x45``,
    ``#22``, ``;ext=5``), else None: the +CC-NSN form has no place for it, so the caller
    says it was left out (it was dropped without a word, and the lead's extension lost).

    Parsing with phonenumbers costs about 20 µs and depends only on the text and the
    region, so results are memoised (bounded: the least recently used go first).
    """
    import phonenumbers  # (here: a mapping without phone never loads it, nor does a start)

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, _NOT_PARSED, None
    national = phonenumbers.national_significant_number(number)
    if len(national) > sum(ch.isdigit() for ch in text):
        return None, _LETTERS, None
    if not phonenumbers.is_possible_number(number) or _too_long(number.country_code, national):
        return None, _WRONG_LENGTH, None
    formatted = f"+{number.country_code}-{national}"
    return formatted, None, number.extension or None


#: The most digits a phone number has, its country code included (ITU-T E.164).
E164_MAX_DIGITS = 15


def _too_long(country_code: int | None, national: str) -> bool:
    """Whether a number is longer than E.164 lets one be. phonenumbers calls some such
    numbers possible (a German one of 15 national digits, or an Indian mobile with an extra
    digit typed after it gives 11): sent, LeadSquared refused the lead for its Phone (the
    sandbox takes 7 to 15 digits), so the whole lead was dead, where a number that is not
    one is left out with a warning and the lead sent."""
    return len(str(country_code or "")) + len(national) > E164_MAX_DIGITS


def clear_memos() -> None:
    """Forget every memoised transform result (benchmarks measure the cost without them)."""
    _format_phone.cache_clear()


#: The longest text phonenumbers reads (its ``_MAX_INPUT_STRING_LENGTH``): a longer one is
#: no phone number, and is answered without it and without the memo, which would otherwise
#: keep each such text (a sender's megabyte) for as long as it stays among the 4,096 kept.
PHONE_MAX_TEXT = 250


def _phone(value: Any, _arg: Any, ctx: Context) -> Any:
    text = to_text(value).strip()
    formatted: str | None = None
    reason: str | None = _NOT_PARSED
    extension: str | None = None
    if len(text) <= PHONE_MAX_TEXT:
        as_float = _FLOAT_WRITTEN.fullmatch(text)
        number = as_float.group(1) if as_float else text
        formatted, reason, extension = _format_phone(number, ctx.default_region)
    if extension is not None:
        ctx.warn(
            f"{shown_text(text)!r} sent as {formatted}, its extension {extension} left out "
            "(LeadSquared's +CC-NUMBER form holds no extension; map the value to an mx_ "
            "field too to keep it)"
        )
    if reason == _NOT_PARSED:
        hint = "" if ctx.default_region or text.startswith("+") else " (no default_region set)"
        ctx.warn(f"{shown_text(text)!r} is not a phone number{hint}; left out")
    elif reason == _LETTERS:
        # phonenumbers reads three or more letters as a vanity number's digits (1-800-FLOWERS):
        # "98765 mob" was sent as +91-98765662, "+91 98765 43210 ext" as +91-9876543210398.
        ctx.warn(
            f"{shown_text(text)!r} is not a phone number (its letters would be read as "
            "digits, as in 1-800-FLOWERS); left out"
        )
    elif reason == _WRONG_LENGTH:
        ctx.warn(f"{shown_text(text)!r} is not a phone number (wrong length); left out")
    return formatted


_MS_THRESHOLD = 1e11  # a unix time this large is in milliseconds (1e11 s is the year 5138)
#: Zone words a date may end with, meaning UTC (any case, spaces before them allowed).
_TZ_WORDS = frozenset({"UTC", "GMT"})
_NUMBER = re.compile(r"\s*-?\d+(\.\d+)?\s*")
#: ISO 8601's basic date, ``YYYYMMDD`` (``20240101``), as text or as a JSON number.
_BASIC_DATE = re.compile(r"\s*(\d{4})(\d{2})(\d{2})\s*")
#: The years a basic date is read in. Eight digits as unix seconds are 1970-03 to 1973-03,
#: which no sender means; as a date in these years they are what senders do send.
_BASIC_DATE_YEARS = range(1900, 2101)


def _utc_words_as_z(text: str) -> str:
    """``text`` with a trailing ``UTC`` or ``GMT`` (and the spaces before it) written ``Z``.

    Not ``re.sub(r"\\s*(UTC|GMT)$")``: searched from every space of a run of them, that
    costs time in the square of the run's length, and the text is the sender's (a date of
    40,000 spaces between two letters held the dispatcher, and with it the event loop that
    answers webhooks, 18 s; a 1 MiB one, hours).
    """
    tail = text[-3:]
    if tail.isascii() and tail.upper() in _TZ_WORDS:
        return text[:-3].rstrip() + "Z"
    return text


def _basic_date(value: Any) -> datetime | None:
    """``value`` as the ISO 8601 basic date ``YYYYMMDD``, if it is eight digits that are a
    calendar date from 1900 to 2100; else None (and the caller reads it as unix time)."""
    text = str(value) if type(value) is int else value
    match = _BASIC_DATE.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match[1]) not in _BASIC_DATE_YEARS:
        return None
    try:
        return datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
    except ValueError:  # 20241301: no such day; unix seconds, as before
        return None


def _parse_instant(value: Any) -> datetime | None:
    """The instant ``value`` writes, as its date and time in UTC (naive when no offset was
    written: taken as UTC, which LeadSquared expects), or None when it writes none."""
    if type(value) is str and value[:1].isdigit() and "-" in value:
        # A date written with dashes (2024-03-15, the ISO 8601 most senders send): no basic
        # date (digits alone) nor number (its one dash, if any, before its digits).
        return _parse_iso(value)
    if isinstance(value, bool):
        return None
    if (basic := _basic_date(value)) is not None:
        return basic
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        value = float(value)
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if not isinstance(value, str):
        return None
    return _parse_iso(value)


def _parse_iso(value: str) -> datetime:
    """:func:`_parse_instant` of a text that is neither a basic date nor a number: ISO 8601.

    Raises:
        ValueError: it is no ISO 8601 date.
    """
    text = _utc_words_as_z(value.strip())
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:  # no offset written: taken as UTC (a naive datetime's
        return parsed  # replace(tzinfo=UTC) cost more than the rest of the parse)
    return parsed.astimezone(UTC)


def _date(value: Any, _arg: Any, ctx: Context) -> Any:
    try:
        instant = _parse_instant(value)
    except (ValueError, OverflowError, OSError):
        instant = None
    if instant is None:
        ctx.warn(f"{shown_text(value)!r} is not a date (ISO 8601 or unix time); left out")
        return None
    # YYYY-MM-DD HH:MM:SS with the year padded to four digits (year 99 is 0099, which
    # glibc's strftime("%Y") would write as 99), at half strftime's cost: isoformat's first
    # 19 characters (its fraction of a second and offset, when it writes them, come after).
    return instant.isoformat(" ")[:19]


def _map(value: Any, table: Any, _ctx: Context) -> Any:
    key = to_text(value)
    if key in table:
        return table[key] or None  # an empty target drops the value
    if "*" in table:
        return table["*"] or None
    return value


_ITEM_FUNCS: dict[str, ItemFunc] = {
    "trim": _trim,
    "lower": _lower,
    "upper": _upper,
    "title": _title,
    "phone": _phone,
    "first_word": _first_word,
    "rest_words": _rest_words,
    "date": _date,
    "map": _map,
    "string": _string,
    "digits": _digits,
}
#: Every transform name, for "did you mean" hints and the docs.
NAMES = (*_ITEM_FUNCS, "join")
_WITH_ARG = {"join", "map"}
#: Transforms given objects as they are: ``string`` writes one as JSON, ``date`` and
#: ``phone`` leave one out with their own warning (not a date, not a phone number).
_SEE_OBJECTS = {"string", "date", "phone"}


@dataclass(frozen=True, slots=True)
class Transform:
    """One parsed transform: its name, its argument (``join``'s separator, ``map``'s table)."""

    name: str
    arg: Any = None
    #: What runs per value (``None`` for ``join``, which takes them all at once), and
    #: whether an object is given to it as it is: both fixed by ``name``, looked up once
    #: here rather than for every value mapped.
    func: ItemFunc | None = field(init=False, compare=False, repr=False)
    sees_objects: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "func", _ITEM_FUNCS.get(self.name))
        object.__setattr__(self, "sees_objects", self.name in _SEE_OBJECTS)

    def single(self, value: Any, ctx: Context) -> Any:
        """``apply([value], ctx)`` for one ``value`` that is a string, number or boolean and
        not blank: the one value it gives, or ``None`` when it gives none. (A field's path
        finds one such value for most fields mapped: no list is made for each transform.)"""
        func = self.func
        if func is None:  # join: the text of a value that is not blank is not blank
            return to_text(value).strip()
        result = func(value, self.arg, ctx)
        if isinstance(result, str) and not (
            (kept := result.strip()) and kept[0] not in INVISIBLE  # (is_blank, mostly saved)
        ):
            return None if is_blank(result) else result
        return result

    def apply(self, values: list[Any], ctx: Context) -> list[Any]:
        """The values after this transform; blanks and dropped values are removed."""
        if not self.sees_objects:
            for value in values:
                if isinstance(value, dict):
                    values = [v for v in values if not _object_left_out(v, self.name, ctx)]
                    break
        func = self.func
        if func is None:  # join: each value not blank, trimmed (a plain loop, no generators)
            texts = []
            for value in values:
                if isinstance(value, str):
                    text = value.strip()
                    if text and (text[0] not in INVISIBLE or not is_blank(text)):
                        texts.append(text)
                elif value is not None:  # a number's or a boolean's text: never blank
                    texts.append(to_text(value))
            joined = self.arg.join(texts)
            return [joined] if joined else []
        out = []
        for value in values:
            result = func(value, self.arg, ctx)
            if result is None or (
                isinstance(result, str)  # (is_blank(result), its call saved for most strings)
                and not ((kept := result.strip()) and kept[0] not in INVISIBLE)
                and is_blank(result)
            ):
                continue
            out.append(result)
        return out


def _object_left_out(value: Any, what: str, ctx: Context) -> bool:
    """Whether ``value`` is an object, which ``what`` (a transform, or sending) cannot take
    as text; if so a warning says how to pick a member or send its JSON."""
    if not isinstance(value, dict):
        return False
    shown = shown_text(value)
    ctx.warn(
        f"{what} got an object, {shown}, not a value; left out (give the path of one of "
        "its members, or use the string transform to send it as JSON text)"
    )
    return True


_MEMBER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def object_left_out(value: Any, ctx: Context) -> bool:
    """Whether ``value``, about to be sent, is an object: only ``string`` sends one (as JSON).

    If so a warning says what the path found and the two ways to send something: the
    ``string`` transform (its JSON), or a path to a value inside it (one of its members,
    named when it can be written after the path as it stands).
    """
    if not isinstance(value, dict):
        return False
    shown = shown_text(value)
    found = f"{ctx.path} found" if ctx.path is not None else "the value is"
    inside = "point the path at a value inside it"
    member = next(iter(value), None)
    if ctx.path is not None and isinstance(member, str) and _MEMBER.fullmatch(member):
        if "|" not in ctx.path and "where" not in ctx.path:  # (unions: $.a | $.b)
            inside += f", like {ctx.path}.{member}"
    ctx.warn(
        f"{found} an object, {shown}, not sent: add transform: string to send it as JSON "
        f"text, or {inside}"
    )
    return True


_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def _unknown(name: str) -> TransformError:
    close = difflib.get_close_matches(name, NAMES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    msg = f"unknown transform {name!r}; {hint}known: {', '.join(NAMES)}"
    return TransformError(msg)


def _inline_table(text: str, written: str) -> dict[str, str]:
    """The table of ``map({a: b, ...})``, from its YAML text: a mapping of text to text.

    Only composed, never constructed: an alias stays one shared node (no alias bomb can
    grow), and anything but a scalar key and value is refused before it is built.
    """
    try:
        # BaseLoader keeps every scalar a string: "Yes" stays "Yes", "01" stays "01".
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except (yaml.YAMLError, RecursionError) as exc:
        msg = (
            f"map table in {written!r} is not YAML ({_yaml_reason(exc)}); "
            "write it like map({a: b}), quoting keys and texts that hold ',' ':' '{' or '}'"
        )
        raise TransformError(msg) from None
    if not isinstance(node, yaml.MappingNode) or not node.value:
        msg = (
            f"map needs a lookup table in {written!r}; write it like map({{home_loan: Home Loan}})"
        )
        raise TransformError(msg)
    table: dict[str, str] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or not isinstance(value, yaml.ScalarNode):
            shown = key.value if isinstance(key, yaml.ScalarNode) else "a list or table"
            msg = f"map table entry {shown!r} in {written!r} must map to text, not a list or table"
            raise TransformError(msg)
        if not value.value and value.style is None and key.style is None:
            _no_space_after_colon(str(key.value), written)
        if str(key.value) in table:
            # The YAML form ({map: {a: x, a: y}}) is a duplicate-key error; inline, the last
            # one was taken without a word.
            msg = f"map table in {written!r} lists {key.value!r} twice; keep one"
            raise TransformError(msg)
        table[str(key.value)] = str(value.value)
    return table


def _yaml_reason(exc: Exception) -> str:
    """Why a table is not YAML, on one line: PyYAML's own text spans several lines and
    quotes the table again, which would break check's one ``file:line: message`` a line."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, yaml.MarkedYAMLError):
        return str(exc.problem or exc.context or "invalid YAML")
    return " ".join(str(exc).split())


def _parse_table(raw: Any, written: str) -> dict[str, str]:
    if isinstance(raw, str):
        return _inline_table(raw, written)
    if not isinstance(raw, dict) or not raw:
        msg = (
            f"map needs a lookup table in {written!r}; write it like map({{home_loan: Home Loan}})"
        )
        raise TransformError(msg)
    table: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, dict | list):
            msg = f"map table entry {key!r} in {written!r} must map to text, not {value!r}"
            raise TransformError(msg)
        if value is None:
            _no_space_after_colon(to_text(key), written)
        table[to_text(key)] = "" if value is None else to_text(value)
    return table


#: A ':' with no space after it: YAML reads it as part of the text (``a:b`` is one key).
_GLUED_COLON = re.compile(r":(?=\S)")


def _no_space_after_colon(key: str, written: str) -> None:
    """Refuse a table entry written ``{home_loan:Home Loan}``: with no space after its ':',
    YAML reads the whole as a key given no value, which dropped a value written so (an
    empty target drops the value) and left the value meant unmapped, silently. A key holding
    a ':' on purpose is written in quotes (``{"10:30": Morning}``).

    Raises:
        TransformError: ``key`` holds a ':' with text right after it.
    """
    if _GLUED_COLON.search(key) is None:
        return
    before, after = key.split(":", 1)
    msg = (
        f"map table in {written!r} has the entry {key!r} with no value: YAML needs a space "
        f"after ':', so write {before}: {after} (a key holding ':' goes in quotes, "
        f'"{key}": ...)'
    )
    raise TransformError(msg)


def _separator(arg: Any) -> str:
    """``join``'s separator: text (a number is its digits), quotes around it dropped.

    None written (``{join: }``, ``{join: null}``, ``join()``) is an error rather than joining
    with nothing, as is a list, a table or true/false; ``join('')`` (``{join: ''}``) joins
    with nothing on purpose.
    """
    if arg is None or isinstance(arg, bool | dict | list):
        given = "none is written" if arg is None else f"not {arg!r}"
        msg = (
            f"join needs a separator string, e.g. {{join: ', '}} or join(;); {given} "
            "(join('') joins with nothing)"
        )
        raise TransformError(msg)
    sep = to_text(arg)
    if len(sep) >= 2 and sep[0] == sep[-1] and sep[0] in "\"'":
        sep = sep[1:-1]  # join(", ") keeps its space
    return sep


def _build(name: str, arg: Any, has_arg: bool, written: str) -> Transform:
    if name not in NAMES:
        raise _unknown(name)
    if name not in _WITH_ARG:
        if has_arg:
            msg = f"transform {name!r} takes no argument; write {name} instead of {written!r}"
            raise TransformError(msg)
        return Transform(name)
    if not has_arg:
        example = "join(;)" if name == "join" else "map({a: b})"
        msg = f"transform {name!r} needs an argument; write it like {example}"
        raise TransformError(msg)
    if name == "join":
        return Transform("join", _separator(arg))
    return Transform("map", _parse_table(arg, written))


def parse_transform(spec: Any) -> Transform:
    """A :class:`Transform` from ``"trim"``, ``"join(;)"`` or ``{"map": {...}}``."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            msg = f"a transform written as a mapping has one key (like {{join: ';'}}), not {spec!r}"
            raise TransformError(msg)
        ((name, arg),) = spec.items()
        return _build(str(name), arg, True, f"{{{name}: ...}}")
    if not isinstance(spec, str):
        msg = f"a transform is a name like 'trim' or 'join(;)', not {spec!r}"
        raise TransformError(msg)
    match = _CALL.match(spec)
    if not match:
        several = re.split(r"[\s,]+", spec.strip())
        if len(several) > 1 and all(part in NAMES for part in several):
            # transform: trim, lower (or "trim lower") read as one name: "did you mean
            # 'lower'?" pointed away from the fix.
            msg = (
                f"transform {spec!r} names several transforms in one text; write them as a "
                f"list, like [{', '.join(several)}]"
            )
            raise TransformError(msg)
        name = spec.split("(", 1)[0].strip()
        if name and name not in NAMES:
            raise _unknown(name)
        if spec.count("(") > spec.count(")"):
            # transform: [trim, join(, )] in YAML's brackets is 'trim', 'join(' and ')'.
            msg = (
                f"transform {spec!r} is malformed: its '(' is never closed; inside {{ }} or "
                "[ ] a ',' ends a value, so quote a transform holding one, like "
                '"join(, )"'
            )
            raise TransformError(msg)
        msg = f"transform {spec!r} is malformed; write a name like 'trim' or 'join(;)'"
        raise TransformError(msg)
    name, arg = match.group(1), match.group(2)
    # join() holds nothing, as {join: } does: None (a space in the parentheses is text)
    return _build(name, arg or None, arg is not None, spec)


def parse_transforms(spec: Any) -> tuple[Transform, ...]:
    """One transform or a list of them, in the order they apply."""
    if spec is None:
        return ()
    items = spec if isinstance(spec, list) else [spec]
    return tuple(parse_transform(item) for item in items)
