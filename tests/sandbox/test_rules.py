"""Lead.Capture's identity matching and update rules, one test per rule of sandbox.md."""

from __future__ import annotations

import uuid

import pytest

from tests.sandbox.helpers import AUTH, CAPTURE, Lsq, assert_error, body

DUP = "MXDuplicateEntryException"


def test_rule1_no_identifier_creates_a_new_lead_every_time(lsq: Lsq) -> None:
    """Without ProspectId, EmailAddress or Phone every capture creates another lead."""
    first = lsq.ok(("FirstName", "Ann"))
    second = lsq.ok(("FirstName", "Ann"))
    assert first["IsCreated"] and second["IsCreated"]
    assert first["RelatedId"] != second["RelatedId"]
    assert len(lsq.leads()) == 2


def test_rule2_email_matches_case_insensitively(lsq: Lsq) -> None:
    """An email differing only in case finds the same lead."""
    lead = lsq.ok(("EmailAddress", "Ann@Example.com"))
    again = lsq.ok(("EmailAddress", "ann@EXAMPLE.COM"), ("FirstName", "Ann"))
    assert again == {**again, "RelatedId": lead["RelatedId"], "IsCreated": False}
    assert len(lsq.leads()) == 1


def test_rule2_phone_matches_on_digits(lsq: Lsq) -> None:
    """+91-9876543210, +919876543210 and 919876543210 are the same number; 9876543210 is not."""
    lead = lsq.ok(("Phone", "+91-9876543210"))
    for form in ("+919876543210", "919876543210"):
        again = lsq.ok(("Phone", form))
        assert (again["RelatedId"], again["IsCreated"]) == (lead["RelatedId"], False)
    other = lsq.ok(("Phone", "9876543210"))
    assert other["IsCreated"] and other["RelatedId"] != lead["RelatedId"]


def test_rule2_prospect_id_is_looked_up_before_email_and_phone(lsq: Lsq) -> None:
    """A ProspectId hit wins over a Phone that matches another lead: that lead is updated."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    lsq.ok(("EmailAddress", "b@example.com"), ("Phone", "5550001111"))
    result = lsq.ok(("ProspectID", a), ("FirstName", "Ann"))
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)
    lead = lsq.lead(a)
    assert lead is not None and lead["FirstName"] == "Ann"


def test_rule2_email_is_looked_up_before_phone(lsq: Lsq) -> None:
    """Email and Phone naming two different leads: the email's lead is the match (so the
    phone is a duplicate), not the phone's."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    b = lsq.ok(("Phone", "5550001111"))["RelatedId"]
    response = lsq.capture(("EmailAddress", "a@example.com"), ("Phone", "555-000-1111"))
    assert "Phone Number" in assert_error(response, 500, DUP)
    assert len(lsq.activities(b)) == 2 and len(lsq.activities(a)) == 1


def test_rule2_phone_finds_a_lead_when_email_is_unknown(lsq: Lsq) -> None:
    """An unknown email with a known phone updates the phone's lead and fills its email."""
    b = lsq.ok(("Phone", "5550001111"))["RelatedId"]
    result = lsq.ok(("EmailAddress", "new@example.com"), ("Phone", "5550001111"))
    assert (result["RelatedId"], result["IsCreated"]) == (b, False)
    lead = lsq.lead(b)
    assert lead is not None and lead["EmailAddress"] == "new@example.com"


def test_rule3_visitor_prospect_id_becomes_the_new_leads_id(lsq: Lsq) -> None:
    """A registered visitor's ProspectId is the id of the lead it turns into."""
    visitor = str(uuid.uuid4())
    assert lsq.http.post("/_sandbox/visitors", json={"ProspectId": visitor}).status_code == 201
    created = lsq.ok(("ProspectId", visitor.upper()), ("EmailAddress", "v@example.com"))
    assert (created["RelatedId"], created["IsCreated"]) == (visitor, True)
    again = lsq.ok(("ProspectID", visitor), ("FirstName", "Vee"))
    assert (again["RelatedId"], again["IsCreated"]) == (visitor, False)


def test_rule4_prospect_id_with_another_email_creates_a_new_lead(lsq: Lsq) -> None:
    """ProspectId of a lead plus a different email: a new lead with that email; the old is kept."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    result = lsq.ok(("ProspectID", a), ("EmailAddress", "other@example.com"))
    assert result["IsCreated"] and result["RelatedId"] != a
    old = lsq.lead(a)
    assert old is not None and old["EmailAddress"] == "a@example.com"
    new = lsq.lead(result["RelatedId"])
    assert new is not None and new["EmailAddress"] == "other@example.com"


def test_rule4_lead_without_email_is_updated_and_email_filled(lsq: Lsq) -> None:
    """ProspectId of a lead that has no email yet: that lead is updated with the email."""
    a = lsq.ok(("Phone", "5550001111"))["RelatedId"]
    result = lsq.ok(("ProspectID", a), ("EmailAddress", "a@example.com"))
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)
    lead = lsq.lead(a)
    assert lead is not None and lead["EmailAddress"] == "a@example.com"


def test_rule5_prospect_id_without_email_updates_the_lead(lsq: Lsq) -> None:
    """ProspectId of a lead and no EmailAddress: that lead is updated."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    result = lsq.ok(("ProspectID", a), ("Company", "Acme"))
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)
    lead = lsq.lead(a)
    assert lead is not None and lead["Company"] == "Acme"


def test_rule6_prospect_id_and_email_of_the_same_lead_update_it(lsq: Lsq) -> None:
    """ProspectId and EmailAddress both naming one lead (email in another case) update it."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    result = lsq.ok(("ProspectID", a), ("EmailAddress", "A@Example.com"), ("JobTitle", "CTO"))
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)
    assert len(lsq.leads()) == 1


def test_rule7_unknown_prospect_id_with_known_email_updates_that_lead(lsq: Lsq) -> None:
    """A ProspectId that matches nothing does not stop the email from finding its lead."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    result = lsq.ok(("ProspectID", str(uuid.uuid4())), ("EmailAddress", "a@example.com"))
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)


def test_rule8_nothing_matches_creates_a_lead_with_a_fresh_id(lsq: Lsq) -> None:
    """An unknown, non-visitor ProspectId is not reused: the new lead gets a fresh id."""
    unknown = str(uuid.uuid4())
    result = lsq.ok(("ProspectID", unknown), ("EmailAddress", "n@example.com"))
    assert result["IsCreated"]
    assert result["RelatedId"] != unknown
    assert str(uuid.UUID(result["RelatedId"])) == result["RelatedId"]
    assert lsq.lead(unknown) is None


def test_rule9_duplicate_phone_is_refused_and_logged_on_the_owner(lsq: Lsq) -> None:
    """Updating a lead to another lead's phone: 500 duplicate, nothing written, activity on
    the owner."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    b = lsq.ok(("EmailAddress", "b@example.com"), ("Phone", "5550001111"))["RelatedId"]
    response = lsq.capture(("ProspectID", a), ("Phone", "+5550001111"), ("FirstName", "X"))
    message = assert_error(response, 500, DUP)
    assert message == "A Lead with same Phone Number already exists."
    lead_a = lsq.lead(a)
    assert lead_a is not None and "Phone" not in lead_a and "FirstName" not in lead_a
    owner_activities = lsq.activities(b)
    assert len(owner_activities) == 2
    assert {"Attribute": "FirstName", "Value": "X"} in owner_activities[-1]["Data"]
    assert len(lsq.activities(a)) == 1


def test_rule9_email_is_checked_before_phone(lsq: Lsq) -> None:
    """A new lead that would take one lead's email and another's phone is refused for the
    email, and the activity goes to the email's owner only."""
    a = lsq.ok(("EmailAddress", "a@example.com"))["RelatedId"]
    b = lsq.ok(("EmailAddress", "b@example.com"), ("Phone", "5550001111"))["RelatedId"]
    response = lsq.capture(
        ("ProspectID", b), ("EmailAddress", "a@example.com"), ("Phone", "5550001111")
    )
    assert assert_error(response, 500, DUP) == "A Lead with same Email already exists."
    assert len(lsq.activities(a)) == 2
    assert len(lsq.activities(b)) == 1
    assert len(lsq.leads()) == 2


def test_rule10_search_by_looks_up_by_that_attribute_alone(lsq: Lsq) -> None:
    """SearchBy=phone finds the phone's lead even though ProspectId names another lead."""
    a = lsq.ok(("Phone", "5550001111"))["RelatedId"]
    b = lsq.ok(("EmailAddress", "b@example.com"))["RelatedId"]
    result = lsq.ok(("ProspectID", b), ("Phone", "5550001111"), ("SearchBy", "phone"))
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)
    created = lsq.ok(("EmailAddress", "c@example.com"), ("SearchBy", "EmailAddress"))
    assert created["IsCreated"]


def test_rule10_search_by_is_ignored_when_all_three_identifiers_are_given(lsq: Lsq) -> None:
    """With ProspectId, EmailAddress and Phone all given, SearchBy is ignored (rule 2)."""
    b = lsq.ok(("EmailAddress", "b@example.com"))["RelatedId"]
    result = lsq.ok(
        ("ProspectID", b),
        ("EmailAddress", "b@example.com"),
        ("Phone", "5550002222"),
        ("SearchBy", "Phone"),
    )
    assert (result["RelatedId"], result["IsCreated"]) == (b, False)


def test_rule10_bad_search_by_is_invalid_input(lsq: Lsq) -> None:
    """SearchBy with an unsupported value, or naming an attribute not sent, is a 400."""
    bad_value = lsq.capture(("EmailAddress", "b@example.com"), ("SearchBy", "Mobile"))
    assert "'Mobile'" in assert_error(bad_value, 400, "MXInvalidInputException")
    missing = lsq.capture(("EmailAddress", "b@example.com"), ("SearchBy", "Phone"))
    assert "Phone" in assert_error(missing, 400, "MXInvalidInputException")
    assert lsq.leads() == []


def test_rule10_a_bad_search_by_is_refused_even_where_search_by_would_be_ignored(
    lsq: Lsq,
) -> None:
    """With ProspectId, EmailAddress and Phone all given SearchBy is ignored in the lookup,
    but a value other than EmailAddress or Phone is still a 400: the body is checked (400)
    before any rule runs, and rule 10 refuses "any other value" without exception."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("Phone", "5550001111"))["RelatedId"]
    before = lsq.lead(a)
    response = lsq.capture(
        ("ProspectID", a),
        ("EmailAddress", "a@example.com"),
        ("Phone", "5550001111"),
        ("FirstName", "Zed"),
        ("SearchBy", "Mobile"),
    )
    assert "'Mobile'" in assert_error(response, 400, "MXInvalidInputException")
    assert lsq.lead(a) == before
    assert len(lsq.activities(a)) == 1


def test_rule11_source_fields_are_kept_but_empty_ones_filled(lsq: Lsq) -> None:
    """An update overwrites attributes but keeps the lead's Source; an empty source field is
    filled; the activity records the sources sent."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("Source", "Facebook"), ("FirstName", "Ann"))
    lsq.ok(
        ("EmailAddress", "a@example.com"),
        ("Source", "Google"),
        ("SourceCampaign", "spring"),
        ("FirstName", "Anna"),
    )
    lead = lsq.lead(a["RelatedId"])
    assert lead is not None
    assert (lead["Source"], lead["SourceCampaign"], lead["FirstName"]) == (
        "Facebook",
        "spring",
        "Anna",
    )
    last = lsq.activities(a["RelatedId"])[-1]["Data"]
    assert {"Attribute": "Source", "Value": "Google"} in last


SOURCE_FIELDS = ["Source", "SourceMedium", "SourceCampaign", "SourceContent", "SourceReferrer"]


def test_rule11_each_of_the_five_source_fields_is_kept_and_no_other_field(lsq: Lsq) -> None:
    """Every one of rule 11's five source fields keeps the value the lead has; fields that
    only look like one (SourceIPAddress, Origin) are overwritten as any other. Only Source,
    SourceMedium and SourceCampaign were ever sent twice by a test: SourceContent or
    SourceReferrer dropped from the sandbox's set (overwritten on every update) failed none."""
    others = ["SourceIPAddress", "Origin", "FirstName"]
    first = [(name, f"first {name}") for name in SOURCE_FIELDS + others]
    lead_id = lsq.ok(("EmailAddress", "src@example.com"), *first)["RelatedId"]
    second = [(name, f"second {name}") for name in SOURCE_FIELDS + others]
    result = lsq.ok(("EmailAddress", "src@example.com"), *second)
    assert (result["RelatedId"], result["IsCreated"]) == (lead_id, False)
    lead = lsq.lead(lead_id)
    assert lead is not None
    kept = {name: f"first {name}" for name in SOURCE_FIELDS}
    overwritten = {name: f"second {name}" for name in others}
    assert {name: lead[name] for name in SOURCE_FIELDS + others} == kept | overwritten
    assert lsq.activities(lead_id)[-1]["Data"][1:] == body(*second)


def test_rule12_do_not_update_leaves_the_lead_alone_but_posts_the_activity(lsq: Lsq) -> None:
    """LeadUpdateBehavior=DoNotUpdate: the matched lead is unchanged; the activity is posted."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    before = lsq.lead(a)
    result = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Zed"), behavior="DoNotUpdate")
    assert (result["RelatedId"], result["IsCreated"]) == (a, False)
    assert lsq.lead(a) == before
    assert len(lsq.activities(a)) == 2


def test_rule12_update_only_empty_fields(lsq: Lsq) -> None:
    """UpdateOnlyEmptyFields writes only the fields the lead does not have yet."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    lsq.ok(
        ("EmailAddress", "a@example.com"),
        ("FirstName", "Zed"),
        ("LastName", "Lee"),
        behavior="UpdateOnlyEmptyFields",
    )
    lead = lsq.lead(a)
    assert lead is not None and (lead["FirstName"], lead["LastName"]) == ("Ann", "Lee")


def test_rule12_do_not_update_unique_fields(lsq: Lsq) -> None:
    """DoNotUpdateUniqueFields keeps EmailAddress and Phone (filling an empty one) and
    updates the rest."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    lsq.ok(
        ("ProspectID", a),
        ("Phone", "5550001111"),
        ("FirstName", "Anna"),
        behavior="DoNotUpdateUniqueFields",
    )
    lsq.ok(("ProspectID", a), ("Phone", "5550009999"), behavior="DoNotUpdateUniqueFields")
    lead = lsq.lead(a)
    assert lead is not None
    assert (lead["EmailAddress"], lead["Phone"], lead["FirstName"]) == (
        "a@example.com",
        "5550001111",
        "Anna",
    )


def test_rule12_none_is_a_normal_update_and_unknown_values_are_refused(lsq: Lsq) -> None:
    """LeadUpdateBehavior=None updates normally; any other value is a 400 naming it."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Zed"), behavior="None")
    lead = lsq.lead(a)
    assert lead is not None and lead["FirstName"] == "Zed"
    response = lsq.capture(("EmailAddress", "a@example.com"), behavior="Overwrite")
    assert "'Overwrite'" in assert_error(response, 400, "MXInvalidInputException")


@pytest.mark.parametrize(
    "value", ["donotupdate", "DONOTUPDATE", "none", "updateOnlyEmptyFields", " DoNotUpdate", ""]
)
def test_rule12_behavior_values_are_matched_exactly(lsq: Lsq, value: str) -> None:
    """LeadUpdateBehavior takes the four names as written: sandbox.md says which matches
    ignore letter case (parameter names, attribute names, SearchBy values) and says it of
    none of these, so another spelling, an empty value or a padded one is "any other value",
    a 400 quoting it; the lead is not touched and no activity is posted."""
    a = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    before = lsq.lead(a)
    params = {**AUTH, "LeadUpdateBehavior": value}
    pairs = (("EmailAddress", "a@example.com"), ("FirstName", "Zed"))
    response = lsq.http.post(CAPTURE, json=body(*pairs), params=params)
    assert repr(value) in assert_error(response, 400, "MXInvalidInputException")
    assert lsq.lead(a) == before
    assert len(lsq.activities(a)) == 1
