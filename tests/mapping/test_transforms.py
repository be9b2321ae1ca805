"""Each transform on ordinary, empty, non-Latin, numeric and list inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mapping.transforms import NAMES as TRANSFORM_NAMES
from hub.mapping.transforms import (
    Context,
    TransformError,
    _format_phone,
    clear_memos,
    parse_transform,
    parse_transforms,
)
from hub.mapping.values import is_blank


def run(spec: Any, values: list[Any], region: str | None = "IN") -> tuple[list[Any], list[str]]:
    ctx = Context(attribute="X", default_region=region)
    out = list(values)
    for transform in parse_transforms(spec):
        out = transform.apply(out, ctx)
    return out, ctx.warnings


class TestTextTransforms:
    def test_trim_strips_whitespace_of_every_kind(self) -> None:
        """trim removes spaces, tabs, newlines and non-breaking spaces at both ends."""
        assert run("trim", ["  a b \t\n", "\u00a0Zoë\u00a0"])[0] == ["a b", "Zoë"]

    def test_trim_turns_blank_into_absent(self) -> None:
        """A value that is only whitespace after trim is dropped."""
        assert run("trim", ["   ", ""])[0] == []

    def test_lower_and_upper_handle_non_latin(self) -> None:
        """lower and upper follow Unicode case rules (Ø, Σ) and keep scripts without case."""
        assert run("lower", ["ANAÏS ØSTERGAARD", "ΣΟΦΊΑ", "株式会社"])[0] == [
            "anaïs østergaard",
            "σοφία",
            "株式会社",
        ]
        assert run("upper", ["straße"])[0] == ["STRASSE"]

    def test_title_capitalises_words_and_hyphenated_parts(self) -> None:
        """title capitalises each word and each hyphen part, lowering the rest."""
        assert run("title", ["priya RAMAN", "anaïs müller-østergaard", "o'neil"])[0] == [
            "Priya Raman",
            "Anaïs Müller-Østergaard",
            "O'neil",
        ]

    def test_title_capitalises_a_word_after_its_opening_punctuation(self) -> None:
        """A nickname in parentheses, a name in quotes, ¡ or ¿: the first letter after the
        punctuation is capitalised (they kept their lower case); a digit first is kept."""
        assert run("title", ["robert (bob) smith", '"asha" RAO', "¡hola", "3RD floor"])[0] == [
            "Robert (Bob) Smith",
            '"Asha" Rao',
            "¡Hola",
            "3rd Floor",
        ]

    def test_title_keeps_emoji_and_scripts_without_case(self) -> None:
        """title leaves emoji and CJK text as they are."""
        assert run("title", ["🙂 smile", "山田 太郎"])[0] == ["🙂 Smile", "山田 太郎"]

    def test_string_writes_numbers_booleans_and_objects(self) -> None:
        """string gives decimal numbers without .0, true/false, and compact JSON for objects."""
        assert run("string", [21000000002, 180.0, 0.5, True, False, {"a": 1}, 0])[0] == [
            "21000000002",
            "180",
            "0.5",
            "true",
            "false",
            '{"a":1}',
            "0",
        ]

    def test_zero_is_a_value_not_a_blank(self) -> None:
        """The number 0 and the string "0" survive every text transform."""
        for name in ("trim", "lower", "upper", "title", "string", "digits", "first_word"):
            assert run(name, [0])[0] == ["0"], name
            assert run(name, ["0"])[0] == ["0"], name

    def test_digits_keeps_only_digits(self) -> None:
        """digits drops everything but digits, and blanks a digitless value; a digit of any
        script is written 0-9 (LeadSquared's phone and number fields read those)."""
        assert run("digits", ["+91 98765-43210", "abc"])[0] == ["919876543210"]
        assert run("digits", ["+٩١ ٩٨٧٦٥", "۰۹۱۲", "९८७", "98²"])[0] == [
            "9198765",
            "0912",
            "987",
            "982",
        ]

    def test_digits_of_a_float_s_text_leave_its_point_zero_out(self) -> None:
        """A phone or zip column a spreadsheet or a script wrote as a float's text
        ("9876543210.0") gave one 0 too many (98765432100); other decimals keep their digits."""
        assert run("digits", ["9876543210.0", "+919876543210.00", " 560001.0 "])[0] == [
            "9876543210",
            "919876543210",
            "560001",
        ]
        assert run("digits", ["98765.43210", "12.50"])[0] == ["9876543210", "1250"]


class TestNames:
    def test_first_word_and_rest_words_split_a_full_name(self) -> None:
        """first_word and rest_words split on any whitespace, keeping multi-word last names."""
        assert run("first_word", ["  Priya   Raman "])[0] == ["Priya"]
        assert run("rest_words", ["Ana   María de la Cruz"])[0] == ["María de la Cruz"]

    def test_rest_words_of_a_single_name_is_absent(self) -> None:
        """A one-word name has no rest, so the attribute is left out."""
        assert run("rest_words", ["Madonna"])[0] == []
        assert run("first_word", [""])[0] == []

    def test_names_in_other_scripts_and_with_emoji(self) -> None:
        """Splitting works for Cyrillic, Devanagari and emoji names."""
        assert run("first_word", ["Анна Петрова"])[0] == ["Анна"]
        assert run("rest_words", ["प्रिया रमन"])[0] == ["रमन"]
        assert run("rest_words", ["🦄 Unicorn 🌈"])[0] == ["Unicorn 🌈"]


class TestPhone:
    @pytest.mark.parametrize(
        ("raw", "region", "expected"),
        [
            ("+91 98765-43210", None, "+91-9876543210"),
            ("98765 43210", "IN", "+91-9876543210"),
            ("+1 (650) 555-0123", None, "+1-6505550123"),
            ("650.555.0123", "US", "+1-6505550123"),
            ("+915550012345", None, "+91-5550012345"),
            ("0039 06 1234 5678", "IN", "+39-0612345678"),
            (9876543210, "IN", "+91-9876543210"),
            ("+91-9876543210", None, "+91-9876543210"),
            # a float's text, as a spreadsheet or a script writes a phone column read as
            # numbers: the .0 is no digit (it was: +91-98765432100, and 1-650... too long)
            ("9876543210.0", "IN", "+91-9876543210"),
            ("919876543210.0", "IN", "+91-9876543210"),
            ("+16505550123.00", None, "+1-6505550123"),
            ("6505550123.0", "US", "+1-6505550123"),
        ],
    )
    def test_formats_as_plus_cc_dash_number(
        self, raw: Any, region: str | None, expected: str
    ) -> None:
        """phone writes +CC-NATIONAL from spaces, dashes, dots, parentheses and numbers."""
        assert run("phone", [raw], region) == ([expected], [])

    @pytest.mark.parametrize(
        "raw", ["12", "call me", "+", "0", "+49 1512 34567890123", "98765 mob", "+1 800 FLOWERS"]
    )
    def test_unparseable_number_is_left_out_with_a_warning(self, raw: str) -> None:
        """A number that does not parse, or is longer than E.164's 15 digits (phonenumbers
        calls some possible), is dropped and a warning names it; nothing raises."""
        values, warnings = run("phone", [raw])
        assert values == []
        assert len(warnings) == 1
        assert warnings[0].startswith("X: ") and repr(raw) in warnings[0]

    @pytest.mark.parametrize(
        ("raw", "region", "expected", "extension"),
        [
            ("+91 98765 43210 ext. 123", None, "+91-9876543210", "123"),
            ("(650) 555-0123 x45", "US", "+1-6505550123", "45"),
            ("+1 650 555 0123 #22", None, "+1-6505550123", "22"),
            ("+919876543210;ext=5", "IN", "+91-9876543210", "5"),
        ],
    )
    def test_an_extension_left_out_is_said(
        self, raw: str, region: str | None, expected: str, extension: str
    ) -> None:
        """The +CC-NUMBER form has no place for an extension: the number is sent and a
        warning names the extension left out (it was dropped without a word)."""
        values, warnings = run("phone", [raw], region)
        assert values == [expected]
        assert warnings == [
            f"X: {raw!r} sent as {expected}, its extension {extension} left out "
            "(LeadSquared's +CC-NUMBER form holds no extension; map the value to an mx_ "
            "field too to keep it)"
        ]

    def test_national_number_without_region_warns(self) -> None:
        """Without a default_region a number with no country code cannot be placed."""
        values, warnings = run("phone", ["9876543210"], None)
        assert values == []
        assert "no default_region" in warnings[0]

    def test_repeated_numbers_give_the_same_results_and_warnings(self) -> None:
        """Phone results are memoised per text and region: a repeat gives the same value,
        the same number under another region is placed there, and a bad number warns on
        every mapping, not only the first."""
        for _ in range(2):
            assert run("phone", ["98765 43210"], "IN") == (["+91-9876543210"], [])
            assert run("phone", ["98765 43210"], "GB")[0] != ["+91-9876543210"]
            assert run("phone", ["9876543210"], None)[0] == []
            values, warnings = run("phone", ["12"])
            assert values == [] and len(warnings) == 1 and "'12'" in warnings[0]

    def test_clear_memos_forgets_the_phone_results_and_changes_no_answer(self) -> None:
        """bench.mapping's cold figure empties the memo before every document: it must be
        empty afterwards, and mapping again must give the same value."""
        assert run("phone", ["98765 43210"], "IN") == (["+91-9876543210"], [])
        assert _format_phone.cache_info().currsize >= 1
        clear_memos()
        assert _format_phone.cache_info().currsize == 0
        assert run("phone", ["98765 43210"], "IN") == (["+91-9876543210"], [])
        assert _format_phone.cache_info().currsize == 1


class TestDate:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("2025-10-31T12:47:01+0000", "2025-10-31 12:47:01"),
            ("2025-10-31T12:47:01Z", "2025-10-31 12:47:01"),
            ("2025-10-31T18:17:01+05:30", "2025-10-31 12:47:01"),
            ("2025-10-31 07:47:01-05:00", "2025-10-31 12:47:01"),
            ("2025-10-31T12:47:01.123456+00:00", "2025-10-31 12:47:01"),
            ("2025-10-31 12:47:01", "2025-10-31 12:47:01"),
            ("2025-10-31 12:47:01 UTC", "2025-10-31 12:47:01"),
            ("2026-01-15", "2026-01-15 00:00:00"),
            ("-86400", "1969-12-31 00:00:00"),
            (" -86400.5 ", "1969-12-30 23:59:59"),
            (1761914821, "2025-10-31 12:47:01"),
            (1761914821000, "2025-10-31 12:47:01"),
            ("1761914821", "2025-10-31 12:47:01"),
            (0, "1970-01-01 00:00:00"),
            ("0099-01-01", "0099-01-01 00:00:00"),
            ("0999-12-31T23:59:59Z", "0999-12-31 23:59:59"),
        ],
    )
    def test_reads_iso_and_unix_times_into_utc(self, raw: Any, expected: str) -> None:
        """date accepts ISO 8601 with any offset and unix seconds or ms; writes UTC."""
        assert run("date", [raw]) == ([expected], [])

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("20240101", "2024-01-01 00:00:00"),
            (20240101, "2024-01-01 00:00:00"),
            (" 20240229 ", "2024-02-29 00:00:00"),
            ("19000101", "1900-01-01 00:00:00"),
            (21001231, "2100-12-31 00:00:00"),
            ("20240101T101500Z", "2024-01-01 10:15:00"),
            ("20240101T101500+0530", "2024-01-01 04:45:00"),
        ],
    )
    def test_reads_iso_basic_dates_not_as_unix_seconds(self, raw: Any, expected: str) -> None:
        """Eight digits that are a calendar date YYYYMMDD (years 1900-2100) are that date, not
        unix seconds in 1970; the basic date-time (20240101T101500Z) reads too."""
        assert run("date", [raw]) == ([expected], [])

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("20241301", "1970-08-23 06:35:01"),  # no month 13: unix seconds, as ever
            ("21010101", "1970-09-01 04:08:21"),  # after 2100
            ("12345678", "1970-05-23 21:21:18"),
            ("1704067200", "2024-01-01 00:00:00"),  # ten digits: unix seconds
            (20240101.5, "1970-08-23 06:15:01"),  # not an integer: unix seconds
        ],
    )
    def test_eight_digits_that_are_no_date_stay_unix_seconds(self, raw: Any, expected: str) -> None:
        """Digits that are not a calendar date from 1900 to 2100 are read as unix time."""
        assert run("date", [raw]) == ([expected], [])

    @settings(max_examples=300, deadline=None)
    @given(instant=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    def test_writes_what_strftime_writes(self, instant: datetime) -> None:
        """For any instant from year 1 to 9999, date writes what strftime("%Y-%m-%d %H:%M:%S")
        writes for it in UTC, the year padded to four digits (0099, which glibc writes 99)."""
        aware = instant.replace(tzinfo=UTC)
        expected = f"{aware.year:04}-" + aware.strftime("%m-%d %H:%M:%S")
        assert run("date", [aware.isoformat()]) == ([expected], [])

    @pytest.mark.parametrize("raw", ["yesterday", "31/10/2025", True, {"a": 1}])
    def test_unreadable_date_is_left_out_with_a_warning(self, raw: Any) -> None:
        """A value that is not a date is dropped with a warning; nothing raises."""
        values, warnings = run("date", [raw])
        assert values == []
        assert "is not a date" in warnings[0]


class TestListsAndTables:
    def test_join_takes_the_whole_list(self) -> None:
        """join writes every value with the separator, skipping blanks."""
        assert run("join(;)", ["a", "", None, "b", 3])[0] == ["a;b;3"]

    def test_join_with_a_quoted_separator_keeps_its_spaces(self) -> None:
        """join(", ") uses comma-space; join(; ) uses semicolon-space."""
        assert run('join(", ")', ["x", "y"])[0] == ["x, y"]
        assert run("join(; )", ["x", "y"])[0] == ["x; y"]

    def test_join_leaves_out_zero_width_values_and_trims_the_rest(self) -> None:
        """A value of zero-width characters alone is blank to join too; the others are
        joined trimmed (a number or a boolean as its text)."""
        assert run("join(;)", [" a ", "\u200b", "\ufeff \u200d", "\u200bb", 0, False])[0] == [
            "a;\u200bb;0;false"
        ]

    def test_join_of_nothing_is_absent(self) -> None:
        """join over no values (or only blanks) gives no value."""
        assert run("join(,)", [])[0] == []
        assert run("join(,)", ["", " "])[0] == []

    def test_map_looks_values_up(self) -> None:
        """map replaces known values, keeps unknown ones, and reads every scalar as text."""
        spec = "map({home_loan: Home Loan, 1: Yes, NO: Norway})"
        assert run(spec, ["home_loan", 1, "NO", "other"])[0] == [
            "Home Loan",
            "Yes",
            "Norway",
            "other",
        ]

    def test_a_key_holding_a_colon_in_quotes_or_given_a_value_is_taken(self) -> None:
        """A ':' is refused only in a key written plain and given no value."""
        assert run('map({"10:30": Morning, "x:y": "", http://a: b})', ["10:30", "x:y"])[0] == [
            "Morning"
        ]
        assert run({"map": {"10:30": "", "a": "b:c"}}, ["10:30", "a"])[0] == ["b:c"]

    def test_map_with_a_star_default_and_a_drop(self) -> None:
        """A "*" entry catches every other value; an empty target drops the value."""
        spec = {"map": {"a": "A", "spam": "", "*": "Other"}}
        assert run(spec, ["a", "spam", "zzz"])[0] == ["A", "Other"]

    def test_join_with_nothing_is_said_on_purpose(self) -> None:
        """join('') and {join: ''} join with nothing (no separator at all is an error)."""
        assert run("join('')", ["a", "b"])[0] == ["ab"]
        assert run({"join": ""}, ["a", "b"])[0] == ["ab"]

    def test_transforms_apply_in_order(self) -> None:
        """A list of transforms runs left to right."""
        assert run(["trim", "lower", {"join": "|"}], [" A ", "B"])[0] == ["a|b"]


class TestParsing:
    @pytest.mark.parametrize(
        ("spec", "fragment"),
        [
            ("lowr", "did you mean 'lower'"),
            ("join", "needs an argument"),
            ({"join": None}, "join needs a separator string, e.g. {join: ', '}"),
            ("join()", "join needs a separator string, e.g. {join: ', '}"),
            ({"join": ["; "]}, "join needs a separator string"),
            ({"join": True}, "join needs a separator string"),
            ("trim(x)", "takes no argument"),
            ("map(nope)", "lookup table"),
            ("map({a: [1]})", "must map to text"),
            ("map({a: " + "[" * 600 + "]" * 600 + "})", "nested too deeply"),
            ("map({[a]: b})", "must map to text"),
            ("map({a: x, b: y, a: z})", "map table in 'map.{a: x, b: y, a: z}.' lists 'a' twice"),
            ('map({"on": "0", on: "1"})', "lists 'on' twice; keep one"),
            # no space after ':': YAML reads one key given no value, and the map dropped a
            # value written so and passed the value meant through unmapped, silently
            (
                "map({home_loan:Home Loan, car: Car})",
                "has the entry 'home_loan:Home Loan' with "
                "no value: YAML needs a space after ':', so write home_loan: Home Loan",
            ),
            ({"map": {"a:b": None}}, "has the entry 'a:b' with no value"),
            ({"join": ";", "map": {}}, "one key"),
            (42, "is a name like"),
            ("frist_word(", "did you mean 'first_word'"),
        ],
    )
    def test_bad_transforms_are_rejected_with_the_fix(self, spec: Any, fragment: str) -> None:
        """An unknown name or a bad argument raises TransformError saying how to write it."""
        with pytest.raises(TransformError, match=fragment.replace("(", r"\(")):
            parse_transform(spec)


def test_an_inline_map_table_is_composed_not_expanded() -> None:
    """Aliases in map({...}) stay shared scalars: a table of text to text is read whatever its
    anchors, and an alias to a list (the start of an alias bomb) is refused, not built."""
    shared = parse_transform("map({a: &x Home, b: *x})")
    assert shared.arg == {"a": "Home", "b": "Home"}
    bomb = "map({l0: &l0 [x, x], l1: &l1 [*l0, *l0, *l0], l2: [*l1, *l1, *l1]})"
    with pytest.raises(TransformError, match="must map to text"):
        parse_transform(bomb)


class TestObjects:
    @pytest.mark.parametrize(
        "spec", ["trim", "lower", "upper", "title", "first_word", "rest_words", "digits"]
    )
    def test_a_text_transform_leaves_an_object_out_with_a_warning(self, spec: str) -> None:
        """upper on {"a": 1} gave '{"A":1}' (its JSON upper-cased, keys and all), digits
        '1', first_word the JSON itself: an object is left out with a warning naming the
        fix, and the other values go on."""
        values, warnings = run(spec, [{"a": 1, "b": "é"}, "x 0"])
        assert values == run(spec, ["x 0"])[0]
        assert len(values) == 1 and "a" not in values[0]
        assert warnings == [
            f'X: {spec} got an object, {{"a":1,"b":"é"}}, not a value; left out (give the '
            "path of one of its members, or use the string transform to send it as JSON text)"
        ]

    def test_join_and_map_leave_an_object_out(self) -> None:
        """join pasted an object's JSON between the texts; map({"*": x}) replaced it."""
        assert run("join(;)", ["a", {"k": "v"}, "b"])[0] == ["a;b"]
        assert run("map({'*': other})", [{"k": "v"}])[0] == []

    def test_string_still_writes_an_object_as_json(self) -> None:
        """string is how an object is sent on purpose; text transforms may follow it."""
        assert run(["string", "upper"], [{"a": "é"}]) == (['{"A":"É"}'], [])


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("map({a: b)", "expected ',' or '}', but got '<stream end>'"),
        ("map({a: b: c})", "expected ',' or '}', but got ':'"),
        ("map({a: 'b})", "found unexpected end of stream"),
    ],
)
def test_a_map_table_that_is_not_yaml_is_named_on_one_line(spec: str, reason: str) -> None:
    """The reason was PyYAML's whole text: six lines quoting the table with
    in "<unicode string>", line 1, column 6 and carets, which broke check's one
    `file:line: message` a line. It is the problem alone now, with how to write a table."""
    with pytest.raises(TransformError) as info:
        parse_transform(spec)
    assert str(info.value) == (
        f"map table in {spec!r} is not YAML ({reason}); write it like map({{a: b}}), "
        "quoting keys and texts that hold ',' ':' '{' or '}'"
    )


#: One value as a field's path finds it alone: text (with the whitespace, zero-width
#: characters, dashes, digits and letters the transforms look at), a number or a boolean.
_ONE_VALUE = st.one_of(
    st.text(alphabet=" \t-+:.0123456789TZaAbé\u200b\u00a0", max_size=12),
    st.sampled_from(["2026-01-15", "+1 555 555 0187", "-86400", " jo-ann o'neil ", "20240229"]),
    st.integers(min_value=-(10**13), max_value=10**13),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
_EVERY_TRANSFORM = [
    *(n for n in TRANSFORM_NAMES if n not in ("join", "map")),
    "join(; )",
    "map({a: A, '0': '', b: ' '})",
    "map({'*': x, a: ''})",
]


@settings(max_examples=400, deadline=None)
@given(value=_ONE_VALUE, spec=st.sampled_from(_EVERY_TRANSFORM))
def test_a_transform_of_one_value_gives_what_it_gives_in_a_list(value: Any, spec: str) -> None:
    """``Transform.single`` (a field's one value, without a list) gives the one value
    ``apply([value])`` gives, or None where that gives none, with the same warnings."""
    if isinstance(value, str) and is_blank(value):
        return  # (single is given values that are not blank)
    (transform,) = parse_transforms(spec)
    in_list = Context(attribute="X", default_region="US")
    alone = Context(attribute="X", default_region="US")
    expected = transform.apply([value], in_list)
    got = transform.single(value, alone)
    assert ([] if got is None else [got]) == expected
    assert alone.warnings == in_list.warnings
