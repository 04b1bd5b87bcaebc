"""Budgets on the bridge's side (specs/budgets.md). Pure (no I/O).

:class:`SpendMeter` counts what this pi spends while this bridge runs: the usage of every assistant message that
arrives (``message_end``), never a loaded or resumed history. Its counter goes upward with every register and
heartbeat; the hypivisor adds the growth to its ledger (per day, machine, folder, agent) and answers ``hold`` when
a budget is reached.

:class:`BudgetGuard` keeps that answer: while held, a run that is working is aborted once (pi's abort keeps the
partial turn), a run that starts anyway (typed in pi's terminal) is aborted at its start, and prompts from
dashboards are refused with ``BUDGET_EXCEEDED`` until the hold is lifted (the budget raised, or overridden once).
"""

from __future__ import annotations

import secrets
from typing import Any

from pi_socket.protocol import SpendCounter

from .history import message_usage


class SpendMeter:
    def __init__(self, boot: str | None = None) -> None:
        self.boot = boot or secrets.token_hex(8)
        self.cost = 0.0
        self.tokens = 0

    def observe(self, event: dict[str, Any]) -> bool:
        """One pi event; True when the counter grew (the hypivisor should hear it now)."""
        if event.get("type") != "message_end":
            return False
        message = event.get("message")
        if not isinstance(message, dict) or message.get("role") != "assistant":
            return False
        tokens, cost = message_usage(message)
        total = tokens["total"] or tokens["input"] + tokens["output"] + tokens["cache_read"] + tokens["cache_write"]
        if total <= 0 and cost <= 0:
            return False
        self.tokens += max(0, total)
        self.cost += max(0.0, cost)
        return True

    def counter(self) -> SpendCounter:
        return SpendCounter(boot=self.boot, cost=min(self.cost, 1e12), tokens=self.tokens)


class BudgetGuard:
    def __init__(self) -> None:
        self.reason: str | None = None
        self._aborted_run = False  # this run was aborted already (once per run)

    @property
    def held(self) -> bool:
        return self.reason is not None

    def answer(self, result: Any, working: bool) -> bool:
        """A register or heartbeat answer; True when the working run must be aborted now."""
        hold = result.get("hold") if isinstance(result, dict) else None
        reason = hold.get("reason") if isinstance(hold, dict) else None
        self.reason = str(reason)[:300] if reason else None
        return self._abort_if(working)

    def run_started(self) -> bool:
        """``agent_start``: True when this run must be aborted (held)."""
        self._aborted_run = False
        return self._abort_if(True)

    def _abort_if(self, working: bool) -> bool:
        if self.reason is None or not working or self._aborted_run:
            return False
        self._aborted_run = True
        return True
