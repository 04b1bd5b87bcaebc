"""What the bridge notices in pi's events beyond its state, in one call per event (pure): the inbox tracker
(attention.py) and the watchdogs (watchdog.py). Most events (streamed deltas) concern neither: for those this
costs one set lookup and a clock update (bench section "9 watchdogs")."""

from __future__ import annotations

from typing import Any

from .attention import _KINDS as _INBOX_KINDS
from .attention import AttentionTracker
from .watchdog import _RELEVANT as _WATCHDOG_KINDS
from .watchdog import Thresholds, Watchdog

_ANY = _INBOX_KINDS | _WATCHDOG_KINDS


class Notice:
    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.tracker = AttentionTracker()
        self.watchdog = Watchdog(thresholds)

    def observe(self, event: dict[str, Any], settled_supported: bool, now: float) -> bool:
        """One pi event; True when what the bridge reports upward changed (the roster should hear it now)."""
        dog = self.watchdog
        if event.get("type") not in _ANY:
            dog.last_event = now  # the run is alive
            return "stall" in dog.findings and dog.tick(now)
        return self.tracker.observe(event, settled_supported, now) | dog.observe(event, now)
