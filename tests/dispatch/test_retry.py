"""The retry policy: exponential backoff with full jitter, and giving up after a deadline."""

from __future__ import annotations

from hub.config.models import RetrySchedule
from hub.dispatch.retry import RetryPolicy, time_in

SCHEDULE = RetrySchedule(initial=10.0, max_interval=3600.0, give_up_after=72 * 3600.0)


def test_ceiling_doubles_and_is_capped() -> None:
    """The longest wait doubles with each try and never passes max_interval."""
    policy = RetryPolicy(SCHEDULE)
    assert [policy.ceiling(n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 80.0, 160.0]
    assert policy.ceiling(20) == 3600.0
    assert policy.ceiling(10_000) == 3600.0  # no overflow on absurd attempt counts


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    """The wait is random() times the ceiling: 0 at one end, the ceiling at the other."""
    assert RetryPolicy(SCHEDULE, random=lambda: 0.0).next_attempt(3, 1000.0, 1000.0) == 1000.0
    assert RetryPolicy(SCHEDULE, random=lambda: 0.999).next_attempt(3, 0.0, 100.0) == 100.0 + (
        0.999 * 40.0
    )


def test_gives_up_once_the_deadline_passed() -> None:
    """After give_up_after since receipt the policy returns None, so the event is dead."""
    policy = RetryPolicy(SCHEDULE, random=lambda: 0.5)
    received = 1_000_000.0
    assert policy.next_attempt(50, received, received + 72 * 3600.0) is None
    assert policy.next_attempt(50, received, received + 80 * 3600.0) is None


def test_last_try_is_scheduled_at_the_deadline_not_after() -> None:
    """A wait that would run past the deadline is cut to the deadline: one last try."""
    policy = RetryPolicy(SCHEDULE, random=lambda: 1.0)
    received = 0.0
    now = 72 * 3600.0 - 60.0
    assert policy.next_attempt(30, received, now) == 72 * 3600.0


def test_multiplier_is_respected() -> None:
    """A multiplier of 3 triples the ceiling per try."""
    policy = RetryPolicy(RetrySchedule(initial=1.0, max_interval=100.0, multiplier=3.0))
    assert [policy.ceiling(n) for n in range(1, 6)] == [1.0, 3.0, 9.0, 27.0, 81.0]


def test_a_failure_that_must_not_give_up_is_tried_again_past_the_deadline() -> None:
    """give_up=False (a rate-limited answer): past give_up_after, the usual jittered wait."""
    policy = RetryPolicy(SCHEDULE, random=lambda: 0.5)
    received = 1_000_000.0
    now = received + 80 * 3600.0
    assert policy.next_attempt(50, received, now, give_up=False) == now + 1800.0
    assert policy.next_attempt(2, received, received, give_up=False) == received + 10.0


def test_a_huge_multiplier_caps_at_max_interval_without_overflow() -> None:
    """A multiplier the config takes (any number of at least 1), 100000: its 62nd power is
    past a float (1e200's second), and the ceiling raised OverflowError there, so the failed
    try's outcome was never written: the event went back at once, its call made again each
    second with no backoff and no attempt counted, a send_failed traceback each time (seen
    through serve and the sandbox). The ceiling is max_interval, for a pause's level too."""
    schedule = RetrySchedule(initial=10.0, max_interval=3600.0, multiplier=100_000.0)
    policy = RetryPolicy(schedule, random=lambda: 0.5)
    assert [policy.ceiling(n) for n in (1, 2, 63, 64, 65, 10_000)] == [10.0, 3600.0] + [3600.0] * 4
    assert policy.next_attempt(80, 0.0, 1000.0, give_up=False) == 1000.0 + 1800.0


def test_time_held_counts_a_time_two_holds_share_once() -> None:
    """A target paused (100-200) while its endpoint's lead reads were held (150-300): the
    event queued at 120 had 180 s held by 400, not 230; what lies outside its window, none."""
    pause, reads = (100.0, 200.0), (150.0, 300.0)
    assert time_in([pause, reads], 120.0, 400.0) == 180.0
    assert time_in([reads, pause, (350.0, 380.0)], 120.0, 360.0) == 190.0
    assert time_in([(10.0, 20.0)], 120.0, 400.0) == 0.0
    assert time_in([], 120.0, 400.0) == 0.0
