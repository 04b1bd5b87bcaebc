"""How many connections the hypivisor holds, per peer address and in total. Pure: no I/O.

Every accepted connection on either port is admitted here first and released
when its socket closes, whoever owns it by then (the front, aiohttp, a splice).

* per peer: at most ``per_peer`` connections from one address;
* total: at most ``total``;
* reserve: the last ``total // 8`` slots only go to addresses holding fewer
  than ``SMALL_HOLDER`` connections, so one busy or hostile peer (or a few)
  cannot lock out a dashboard opening its first few connections.

A refused connection is answered HTTP 503 with a JSON error and closed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

SMALL_HOLDER = 8  # a dashboard needs its page, /ws and an agent link or two
RESERVE_FRACTION = 8  # the last 1/8 of the total is the reserve
FD_MARGIN = 64  # descriptors kept free for log files, the listeners, spawns


@dataclass(frozen=True)
class Refusal:
    reason: str


def total_for_fd_limit(wanted: int, fd_soft_limit: int) -> int:
    """The total cap the process can honour: a spliced connection holds two descriptors (client + agent)."""
    if fd_soft_limit <= 0:  # unknown or unlimited
        return wanted
    return max(SMALL_HOLDER, min(wanted, (fd_soft_limit - FD_MARGIN) // 2))


class ConnectionLimiter:
    """Counts open connections by peer address; ``admit`` and ``release`` are O(1)."""

    __slots__ = ("by_peer", "open", "per_peer", "reserve", "total")

    def __init__(self, total: int, per_peer: int):
        self.total = max(1, total)
        self.per_peer = max(1, per_peer)
        self.reserve = self.total // RESERVE_FRACTION
        self.open = 0
        self.by_peer: dict[str, int] = {}

    def admit(self, peer: str) -> Refusal | None:
        """Count a new connection from ``peer``, or say why not (nothing is counted then)."""
        held = self.by_peer.get(peer, 0)
        if held >= self.per_peer:
            return Refusal(f"too many connections from this address ({self.per_peer} open)")
        if self.open >= self.total:
            return Refusal(f"too many connections ({self.total} open)")
        if self.open >= self.total - self.reserve and held >= SMALL_HOLDER:
            return Refusal(f"too many connections ({self.open} open; the rest is kept for new clients)")
        self.open += 1
        self.by_peer[peer] = held + 1
        return None

    def release(self, peer: str) -> None:
        held = self.by_peer.get(peer, 0)
        if held <= 0:
            return
        self.open -= 1
        if held == 1:
            del self.by_peer[peer]
        else:
            self.by_peer[peer] = held - 1
