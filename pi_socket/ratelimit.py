"""Per-connection token bucket for incoming frames (pure, no I/O, no clock of its own).

Used by the hypivisor's ``/ws`` (``--rate-limit``) and the bridge's agent port
(``PI_SOCKET_RATE_LIMIT``). A frame over the limit is answered with error
1008 RATE_LIMITED and not executed; the connection stays open. ``rate`` is
frames per second sustained; the bucket holds ``burst`` frames so a client
that catches up after a pause (a bridge re-sending heartbeats, Pi-DE opening
a conversation) is never refused. ``rate <= 0`` disables the limit.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; False when the bucket is empty (the frame is over the limit)."""
        if self.rate <= 0:
            return True
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
