"""Dealing an account's free rate-limit slots between the processes waiting for them."""

from __future__ import annotations

import pytest

from hub.store.turns import TURN_STEP, WAITER_GRACE, Waiter, deal, my_place

NOW = 1_000.0


def _waiters(*rows: Waiter) -> dict[str, Waiter]:
    return {w.name: w for w in rows}


def test_alone_a_take_gets_the_room_it_wants() -> None:
    d = deal("a", 5, calls=8, count=5, now=NOW, waiters={})
    assert (d.new_mine, d.theirs, d.count) == (3, {}, 8)


def test_room_is_dealt_one_slot_at_a_time_in_queue_order() -> None:
    """Seven free slots, three waiters wanting 4 each (B since 1, C since 2, the asker A new,
    so at the back): dealt B, C, A, B, C, A, B."""
    waiters = _waiters(Waiter("b", 1.0, 4, NOW + 5), Waiter("c", 2.0, 4, NOW + 5))
    d = deal("a", 4, calls=7, count=0, now=NOW, waiters=waiters)
    assert d.theirs == {"b": 3, "c": 2} and d.new_mine == 2
    # each one served goes to the back, in the order of its last slot
    assert sorted(d.moved, key=d.moved.__getitem__) == ["c", "a", "b"]
    assert d.moved["a"] - d.moved["c"] == pytest.approx(TURN_STEP)


def test_a_waiter_already_holding_what_it_wants_gets_no_more() -> None:
    waiters = _waiters(Waiter("b", 1.0, 2, NOW + 5, ready=[7, 8]))
    d = deal("a", 4, calls=8, count=2, now=NOW, waiters=waiters)
    assert d.theirs == {} and d.new_mine == 4


def test_the_askers_set_aside_slots_come_first_and_extras_are_dropped() -> None:
    waiters = _waiters(Waiter("a", 1.0, 3, NOW + 5, ready=[4, 5, 6]))
    d = deal("a", 2, calls=8, count=8, now=NOW, waiters=waiters)
    assert (d.mine, d.drop, d.new_mine, d.count) == ([4, 5], [6], 0, 7)


def test_a_waiter_not_served_keeps_its_place_and_is_due_when_room_comes() -> None:
    own = Waiter("a", 3.0, 2, NOW + 5)
    d = deal("a", 2, calls=4, count=4, now=NOW, waiters=_waiters(own))
    assert d.new_mine == 0 and d.moved == {}
    assert my_place(d, "a", 2, own=own, now=NOW, wait=2.5, window=5.0) == (
        3.0,
        2,
        NOW + 2.5 + WAITER_GRACE,
    )
    # a wait past the window (a call still in flight) is asked about again within a window
    assert my_place(d, "a", 2, own=own, now=NOW, wait=20.0, window=5.0) == (
        3.0,
        2,
        NOW + 5.0 + WAITER_GRACE,
    )


def test_a_waiter_served_in_part_asks_again_at_once_from_the_back() -> None:
    waiters = _waiters(Waiter("b", 1.0, 4, NOW + 5))
    d = deal("a", 4, calls=4, count=2, now=NOW, waiters=waiters)
    assert d.new_mine == 1 and d.theirs == {"b": 1}
    place = my_place(d, "a", 4, own=None, now=NOW, wait=0.0, window=5.0)
    assert place is not None
    since, left, until = place
    assert (left, until) == (3, NOW + WAITER_GRACE) and since > d.moved["b"]
    # served in full: it waits no more
    d = deal("a", 1, calls=4, count=0, now=NOW, waiters={})
    assert my_place(d, "a", 1, own=None, now=NOW, wait=0.0, window=5.0) is None
