"""Injected faults: 500, 429, timeout, reset and lost_response, by rate or every Nth call."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.sandbox.helpers import Lsq, assert_error

DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


def _emails(n: int) -> list[tuple[str, str]]:
    return [("EmailAddress", f"lead{i}@example.com") for i in range(n)]


def test_rate_one_kind_500_fails_every_capture_and_writes_nothing(lsq: Lsq) -> None:
    """rate 1.0 with kind 500: each capture is a bare 500 (no MX body) and nothing is stored;
    rate 0 turns it off."""
    lsq.faults(rate=1.0, kinds=["500"])
    for pair in _emails(3):
        response = lsq.capture(pair)
        assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert lsq.leads() == []
    lsq.faults(rate=0)
    for pair in _emails(3):
        assert lsq.capture(pair).status_code == 200
    assert len(lsq.leads()) == 3


def test_rate_one_kind_429_answers_the_rate_limit_error(lsq: Lsq) -> None:
    """Kind 429 answers the MX rate-limit envelope and stores nothing; rate 0 turns it off."""
    lsq.faults(rate=1.0, kinds=[429])
    for pair in _emails(3):
        assert_error(lsq.capture(pair), 429, "MXAPIRateLimitExceededException")
    assert lsq.leads() == []
    lsq.faults(rate=0)
    assert lsq.capture(("EmailAddress", "a@example.com")).status_code == 200


def test_timeout_holds_then_closes_without_an_answer(lsq: Lsq) -> None:
    """Kind timeout holds the call timeout_s, then closes it unanswered; nothing is stored."""
    lsq.faults(rate=1.0, kinds=["timeout"], timeout_s=0.3)
    with pytest.raises(DROPPED):
        lsq.capture(("EmailAddress", "a@example.com"), timeout=10.0)
    assert lsq.leads() == []
    lsq.faults(rate=0)
    assert lsq.capture(("EmailAddress", "a@example.com")).status_code == 200


def test_timeout_outlasts_a_client_timeout(lsq: Lsq) -> None:
    """With the default 30 s hold, a client with a short read timeout times out."""
    lsq.faults(rate=1.0, kinds=["timeout"])
    with pytest.raises(httpx.ReadTimeout):
        lsq.capture(("EmailAddress", "a@example.com"), timeout=0.3)
    assert lsq.leads() == []


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_reset_closes_the_connection_before_processing(
    sandbox_factory: Callable[..., Lsq], http: str
) -> None:
    """Kind reset drops the connection without an answer (not a 500) and stores nothing."""
    lsq = sandbox_factory(http=http)
    lsq.faults(rate=1.0, kinds=["reset"])
    for pair in _emails(2):
        with pytest.raises(DROPPED):
            lsq.capture(pair)
    assert lsq.leads() == []
    lsq.faults(rate=0)
    assert lsq.capture(("EmailAddress", "a@example.com")).status_code == 200


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_lost_response_stores_the_capture_then_closes(
    sandbox_factory: Callable[..., Lsq], http: str
) -> None:
    """Kind lost_response processes the capture, then closes unanswered; a resend updates."""
    lsq = sandbox_factory(http=http)
    lsq.faults(rate=1.0, kinds=["lost_response"])
    with pytest.raises(DROPPED):
        lsq.capture(("EmailAddress", "a@example.com"))
    (lead,) = lsq.leads()
    assert lead["EmailAddress"] == "a@example.com"
    lsq.faults(rate=0)
    again = lsq.ok(("EmailAddress", "a@example.com"))
    assert (again["RelatedId"], again["IsCreated"]) == (lead["ProspectID"], False)


def _outcomes(lsq: Lsq, n: int) -> list[int]:
    return [lsq.capture(("FirstName", f"n{i}")).status_code for i in range(n)]


def test_seed_makes_the_random_sequence_repeatable(lsq: Lsq) -> None:
    """The same seed gives the same sequence of outcomes; the sequence mixes kinds and passes."""
    lsq.faults(rate=0.5, kinds=["500", "429"], seed=7)
    first = _outcomes(lsq, 30)
    lsq.faults(rate=0.5, kinds=["500", "429"], seed=7)
    assert _outcomes(lsq, 30) == first
    assert {200, 429, 500} <= set(first)
    lsq.faults(rate=0.5, kinds=["500", "429"], seed=8)
    assert _outcomes(lsq, 30) != first


def test_every_nth_call_fails_in_turn_through_the_kinds(lsq: Lsq) -> None:
    """every 3 fails calls 3, 6, 9, 12 exactly, taking the kinds in order."""
    lsq.faults(every=3, kinds=["500", "429"])
    assert _outcomes(lsq, 12) == [200, 200, 500, 200, 200, 429, 200, 200, 500, 200, 200, 429]


def test_faults_hit_read_backs_but_never_the_control_api(lsq: Lsq) -> None:
    """Faults apply to every /v2 call, read-backs included, and never to /_sandbox."""
    lsq.faults(rate=1.0, kinds=["500"])
    path = "/v2/LeadManagement.svc/Leads.GetById"
    assert lsq.http.get(path, params={"id": "x"}).status_code == 500
    assert lsq.http.get("/_sandbox/leads").status_code == 200
    assert lsq.http.get("/_sandbox/faults").json()["kinds"] == ["500"]


@pytest.mark.parametrize(
    "config",
    [
        {"rate": 1.5, "kinds": ["500"]},
        {"rate": 0.5},
        {"rate": 0.5, "kinds": []},
        {"rate": 0.5, "kinds": ["boom"]},
        {"every": 2.5, "kinds": ["500"]},
        {"every": 2, "rate": 0.5, "kinds": ["500"]},
        {"rate": "half", "kinds": ["500"]},
        {"rate": 0.5, "kinds": ["500"], "seed": "x"},
        # too large for the JSON echo: a 500, the faults in force all the same
        {"every": 1e300, "kinds": ["500"]},
        {"every": 2**64, "kinds": ["500"]},
        {"every": 1_000_000_001, "kinds": ["500"]},  # past the bound
        {"rate": 0.5, "kinds": ["500"], "colour": "red"},
        ["500"],
    ],
)
def test_bad_fault_settings_are_400(lsq: Lsq, config: object) -> None:
    """Fault settings out of range, unknown or missing kinds are a 400 and change nothing."""
    response = lsq.http.post("/_sandbox/faults", json=config)
    assert_error(response, 400, "MXInvalidInputException")
    assert lsq.capture(("FirstName", "a")).status_code == 200
