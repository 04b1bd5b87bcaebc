"""Registry reconnect delays: first retry after 1 s (PI_SOCKET_RECONNECT_MS), doubling, capped at 10 s.

The earlier implementation capped at 5 minutes, so an agent could stay off
the roster for minutes after a hypivisor restart (specs/pi-runtime.md §6); 10 s
keeps the retry cost negligible and the roster fresh.
"""

from __future__ import annotations


class Backoff:
    """Delay sequence; ``reset`` after a successful registration."""

    def __init__(self, first_s: float = 1.0, cap_s: float = 10.0, factor: float = 2.0) -> None:
        self.first_s = first_s
        self.cap_s = max(cap_s, first_s)
        self.factor = factor
        self._next = first_s
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; advances the sequence."""
        delay = self._next
        self._next = min(self._next * self.factor, self.cap_s)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self._next = self.first_s
        self.failures = 0
