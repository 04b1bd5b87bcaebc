"""The live roster feed's bookkeeping (specs/cluster.md §3): which change a hypivisor applies, and when it has missed
a batch. Pure: no NATS, no clock, no loop.

With lease liveness the owner of a record puts it with the stream's ack, and publishes what the stream took as
batches on ``hp.roster.<site>.<hv>``: ``{"hv", "n", "e": [[key, sequence, record or null], …]}``. ``n`` counts the
owner's batches (1, 2, 3, …); a heartbeat batch (``e`` empty) repeats the last ``n``. Another hypivisor reads the
bucket once (the last value of each key, with its stream sequence) and then follows the batches:

* a change is applied only when its stream sequence is newer than the one this hypivisor applied for that key (a
  put or a delete), so the bucket's values and the batches merge in the store's own order, whichever came first;
* an owner's batches arrive in order (one publisher, one subscriber): a number past the next one, or a heartbeat
  naming a batch never seen, is a **gap** (a reconnect, a slow consumer), and the hypivisor reads the bucket again.
  The first message from an owner sets where it starts: what that owner published earlier was stored before this
  hypivisor subscribed, so the bucket read covers it.
"""

from __future__ import annotations

from typing import Literal

from hypivisor.cluster.names import AgentKey

# lease liveness: a change that keeps a record's owner and status (a session name, activity, counts) waits for the
# next multiple of this (wall clock) to go out with the others, and every hypivisor shows the quiet changes it holds
# at those instants (hypivisor/cluster/quiet.py)
GATHER_S = 0.25
# a change every dashboard should see at once (a join, a status, a removal) waits this long for the others of that
# moment: one put burst and one batch for the other hypivisors, one write per dashboard here
SOON_S = 0.005
# ... or this long right after a wait that gathered ``STORM_CHANGES`` or more (a fleet failing over to this
# hypivisor, many agents starting at once): a fail-over's re-registrations then go out in ~4× fewer, larger put
# bursts, batches and dashboard writes, each at most 15 ms later (specs/cluster.md §3)
SOON_STORM_S = 0.02
STORM_CHANGES = 16
MAX_TOMBS = 200_000  # deleted keys whose sequence is kept (an older put of one arriving late is refused)

Heard = Literal["next", "seen", "gap"]


def soon_delay(gathered_last: int) -> float:
    """How long changes to show at once wait for the others of that moment, given how many the last wait gathered:
    ``SOON_S``, or ``SOON_STORM_S`` while a storm lasts (``STORM_CHANGES`` or more)."""
    return SOON_STORM_S if gathered_last >= STORM_CHANGES else SOON_S


class FeedOrder:
    """Stream sequence per key, batch number per owner. Drive it from one event loop."""

    def __init__(self, max_tombs: int = MAX_TOMBS) -> None:
        self.max_tombs = max_tombs
        self._seq: dict[AgentKey, int] = {}  # the latest change applied per key (put or delete)
        self._tombs: dict[AgentKey, None] = {}  # deleted keys, oldest first (their sequence stays in _seq)
        self._batches: dict[str, int] = {}  # owner → the last batch number heard of

    def newer(self, key: AgentKey, seq: int) -> bool:
        """Is a change of ``key`` at stream sequence ``seq`` newer than what was applied?"""
        return seq > self._seq.get(key, 0)

    def applied(self, key: AgentKey, seq: int, deleted: bool = False) -> None:
        self._seq[key] = max(seq, self._seq.get(key, 0))
        self._tombs.pop(key, None)
        if deleted:
            self._tombs[key] = None
            while len(self._tombs) > self.max_tombs:
                oldest = next(iter(self._tombs))
                del self._tombs[oldest]
                self._seq.pop(oldest, None)

    def batch(self, hv: str, n: int, heartbeat: bool) -> Heard:
        """An owner's batch ``n`` (or a heartbeat saying its last batch is ``n``): in order, already seen, or
        after a gap (the bucket must be read again; a batch's own changes still apply, newer ones win)."""
        last = self._batches.get(hv)
        if last is None:
            self._batches[hv] = n
            return "seen" if heartbeat else "next"
        if n <= last:
            return "seen"
        self._batches[hv] = n
        if heartbeat or n > last + 1:
            return "gap"
        return "next"

    def forget(self, hv: str) -> None:
        """The owner is gone (its lease ended): a hypivisor id is never used again."""
        self._batches.pop(hv, None)

    def clear(self) -> None:
        self._seq.clear()
        self._tombs.clear()
        self._batches.clear()


def gather_delay(now: float, period: float) -> float:
    """Seconds from ``now`` (wall clock) to the next multiple of ``period`` (never 0): every hypivisor puts its
    gathered changes at the same instants, so their batches reach each other hypivisor together (one wake-up
    there, not one per owner), and shows the quiet changes it holds at those instants too (one wake-up for both)."""
    return period - now % period
