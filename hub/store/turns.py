"""Turns between the processes waiting for one account's rate-limit slots.

Every process's limiter asks the store for slots (``EventStore.take_slots``) under a name
of its own, its *waiter*. Without turns, the process that asks first when room frees takes
all of it: a process learns at once when its own calls end, while another finds out by
asking every so often, so one of two workers sharing an account sent most of its leads
(23 to 25 of 32 on SQLite), the other's events waiting in their lanes.

So the store keeps a queue of waiters per account (``rate_waiters``). A take that finds
free slots deals them out one at a time, in queue order, to every waiter that still wants
some, the asker included (:func:`deal`). The asker's are its answer; the others' are set
aside for them (counted at once, so nobody else takes them) and handed over at their next
ask. A waiter served goes to the back of the queue; one that got nothing keeps its place.
A waiter is due to ask again when its room comes (at most a window later); past that and
:data:`WAITER_GRACE`, or when it says it stopped waiting, its place and the slots set
aside for it are dropped (they were never used, so they count no more).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: How long past the moment it is due to ask again a waiter keeps its place and the slots
#: set aside for it (seconds): a process that died, or stopped waiting without saying so,
#: then holds nothing.
WAITER_GRACE = 1.0
#: Between the places given to the waiters served by one take, in the order they were
#: served (seconds; far below any real gap between takes).
TURN_STEP = 1e-6


@dataclass(slots=True)
class Waiter:
    """One waiter's row in its account's queue."""

    name: str
    #: Its place: waiters are served in order of ``since`` (then name).
    since: float
    #: How many slots it wanted at its last ask (set-aside ones included).
    want: int
    #: When it stops counting unless it asks again.
    until: float
    #: Slots set aside for it, counted in the window, not yet handed over.
    ready: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Deal:
    """What one take does (see :func:`deal`)."""

    #: Set-aside slots of the asker's, handed over now.
    mine: list[int]
    #: Set-aside slots of the asker's beyond what it wants now: they stop counting.
    drop: list[int]
    #: New slots to take for the asker.
    new_mine: int
    #: New slots to set aside, per other waiter (in queue order).
    theirs: dict[str, int]
    #: The new place of every waiter served (the asker included), behind all the others.
    moved: dict[str, float]
    #: The calls counting against the window once this take is written.
    count: int


def deal(
    me: str, want: int, *, calls: int, count: int, now: float, waiters: dict[str, Waiter]
) -> Deal:
    """Deal the free slots of a window of ``calls``, ``count`` of them counting (set-aside
    ones included), between the asker ``me`` (wanting ``want``) and the live ``waiters``.

    The asker first gets the slots set aside for it. The room left is dealt one slot at a
    time, in queue order (``since``, then name; an asker without a row joins at the back),
    to each waiter still short of what it wanted, until the room or the wants run out.
    """
    want = max(want, 1)
    own = waiters.get(me)
    ready = own.ready if own is not None else []
    mine, drop = ready[:want], ready[want:]
    count -= len(drop)
    short = {w.name: max(0, w.want - len(w.ready)) for w in waiters.values() if w.name != me}
    short[me] = want - len(mine)
    queue = sorted(
        (w.since, w.name) for w in waiters.values() if w.name != me and short[w.name] > 0
    )
    if short[me] > 0:
        queue.append((own.since if own is not None else now, me))
        queue.sort()
    got = dict.fromkeys(short, 0)
    last: dict[str, int] = {}
    free = max(0, calls - count)
    dealt = 0
    while free > dealt:
        before = dealt
        for _, name in queue:
            if free == dealt:
                break
            if got[name] < short[name]:
                got[name] += 1
                last[name] = dealt
                dealt += 1
        if dealt == before:  # every want is met
            break
    served = sorted(last, key=last.__getitem__)
    return Deal(
        mine=mine,
        drop=drop,
        new_mine=got[me],
        theirs={name: got[name] for _, name in queue if name != me and got[name]},
        moved={name: now + TURN_STEP * i for i, name in enumerate(served)},
        count=count + dealt,
    )


def set_aside(
    d: Deal, waiters: dict[str, Waiter], new: list[int]
) -> tuple[list[int], dict[str, tuple[list[int], float]]]:
    """The asker's share of ``new`` (the ids of the slots ``d`` took, in order), and each
    other waiter served: its set-aside slots and its place, as they are to be written."""
    at = d.new_mine
    theirs = {}
    for name, n in d.theirs.items():
        other = waiters[name]
        theirs[name] = [*other.ready, *new[at : at + n]], d.moved.get(name, other.since)
        at += n
    return new[: d.new_mine], theirs


def my_place(
    d: Deal, me: str, want: int, *, own: Waiter | None, now: float, wait: float, window: float
) -> tuple[float, int, float] | None:
    """The asker's ``(since, want, until)`` in the queue after ``d``, or None when it got
    every slot it wanted. ``wait``: how long until room comes, when it got none."""
    got = len(d.mine) + d.new_mine
    left = max(want, 1) - got
    if left <= 0:
        return None
    since = d.moved.get(me, own.since if own is not None else now)
    if got:  # the rest of its callers ask again at once
        return since, left, now + WAITER_GRACE
    return since, left, now + min(wait, window) + WAITER_GRACE
