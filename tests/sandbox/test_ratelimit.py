"""The sandbox's sliding-window rate limit, driven by a ManualClock (no sleeps)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from hub.clock import ManualClock
from hub.sandbox.ratelimit import SlidingWindowLimiter
from hub.units import RateLimit, parse_rate_limit
from tests.sandbox.helpers import KEY, Lsq, assert_error

LIMITED = "MXAPIRateLimitExceededException"


def _limited(factory: Callable[..., Lsq], limit: RateLimit) -> tuple[Lsq, ManualClock]:
    clock = ManualClock()
    return factory(rate_limit=limit, clock=clock), clock


def test_26th_call_in_the_window_is_429_until_the_window_passes(
    sandbox_factory: Callable[..., Lsq],
) -> None:
    """With 25/5s, 25 calls pass, the 26th gets the LeadSquared 429, and calls pass again
    once the clock has moved past the window."""
    lsq, clock = _limited(sandbox_factory, RateLimit(25, 5.0))
    for i in range(25):
        lsq.ok(("FirstName", f"n{i}"))
        clock.advance(0.1)
    message = assert_error(lsq.capture(("FirstName", "x")), 429, LIMITED)
    assert message == "API calls exceeded the limit of 25 in 5 second(s)"
    clock.advance(2.5)  # the first call is now exactly 5 s old
    assert lsq.capture(("FirstName", "y")).status_code == 200
    assert_error(lsq.capture(("FirstName", "z")), 429, LIMITED)
    clock.advance(5.0)
    assert lsq.capture(("FirstName", "z")).status_code == 200


def test_read_back_calls_count_and_control_calls_do_not(
    sandbox_factory: Callable[..., Lsq],
) -> None:
    """Every /v2 path counts against the limit; the control API neither counts nor is limited."""
    lsq, _clock = _limited(sandbox_factory, RateLimit(3, 5.0))
    for _ in range(5):
        assert lsq.http.get("/_sandbox/leads").status_code == 200
    lsq.ok(("FirstName", "a"))
    path = "/v2/LeadManagement.svc/Leads.GetById"
    assert lsq.http.get(path, params={"id": "x"}).status_code == 200
    assert lsq.http.get(path, params={"id": "x"}).status_code == 200
    assert_error(lsq.capture(("FirstName", "b")), 429, LIMITED)
    assert lsq.http.get("/_sandbox/leads").status_code == 200


def test_refused_calls_do_not_count(sandbox_factory: Callable[..., Lsq]) -> None:
    """Calls refused with 401, 404 or 429 do not use up the limit."""
    lsq, clock = _limited(sandbox_factory, RateLimit(3, 5.0))
    with httpx.Client(base_url=lsq.base) as anonymous:
        for _ in range(5):
            assert anonymous.post("/v2/LeadManagement.svc/Lead.Capture").status_code == 401
    for _ in range(5):
        assert lsq.http.get("/v2/LeadManagement.svc/Nope").status_code == 404
    for _ in range(3):
        lsq.ok(("FirstName", "a"))
    clock.advance(1.0)
    for _ in range(5):
        assert_error(lsq.capture(("FirstName", "b")), 429, LIMITED)
    clock.advance(4.0)  # the three allowed calls left the window; the 429s never entered it
    for _ in range(3):
        lsq.ok(("FirstName", "c"))


def test_configured_limit_appears_in_the_message(sandbox_factory: Callable[..., Lsq]) -> None:
    """A 2/1s limit refuses the third call with a message naming 2 and 1 second(s)."""
    lsq, _clock = _limited(sandbox_factory, RateLimit(2, 1.0))
    lsq.ok(("FirstName", "a"))
    lsq.ok(("FirstName", "b"))
    message = assert_error(lsq.capture(("FirstName", "c")), 429, LIMITED)
    assert message == "API calls exceeded the limit of 2 in 1 second(s)"


def test_rate_limit_off_never_refuses(sandbox_factory: Callable[..., Lsq]) -> None:
    """With the limit off (None), 60 calls at one instant all pass."""
    lsq = sandbox_factory(rate_limit=None, clock=ManualClock())
    for i in range(60):
        assert lsq.capture(("FirstName", f"n{i}")).status_code == 200


def test_limiter_counts_each_access_key_separately() -> None:
    """The window is per access key: one key at its limit does not block another."""
    clock = ManualClock()
    limiter = SlidingWindowLimiter(RateLimit(2, 5.0), clock)
    assert limiter.try_acquire(KEY) and limiter.try_acquire(KEY)
    assert not limiter.try_acquire(KEY)
    assert limiter.try_acquire("other-key")
    clock.advance(5.0)
    assert limiter.try_acquire(KEY)


def test_a_window_in_milliseconds_is_shown_in_plain_seconds(
    sandbox_factory: Callable[..., Lsq],
) -> None:
    """--rate-limit 2/700ms makes a window of 700 * 0.001 s (0.7000000000000001 in binary
    floating point); the message says 0.7 second(s), not the float's last digits."""
    limit = parse_rate_limit("2/700ms")
    assert limit is not None
    lsq, _clock = _limited(sandbox_factory, limit)
    lsq.ok(("FirstName", "a"))
    lsq.ok(("FirstName", "b"))
    message = assert_error(lsq.capture(("FirstName", "c")), 429, LIMITED)
    assert message == "API calls exceeded the limit of 2 in 0.7 second(s)"
