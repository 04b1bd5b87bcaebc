"""The registry's side of spend and budgets (specs/budgets.md): the ledger and budgets of :mod:`hypivisor.budget`
kept in the store, each agent's state on its roster card and in the inbox, and the budget methods.

An agent's state is evaluated again when its own spend grew, when spend grew in a scope it shares (its folder;
everyone when a day budget applies), when budgets change, when it (re-)registers and when the day turns.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import BaseModel

from hypivisor.budget import Budgets, Ledger, State
from pi_socket.protocol import (
    BudgetChangedEvent,
    BudgetHold,
    ErrorCode,
    GetSpendParams,
    GetSpendResult,
    GetTotalsResult,
    ListBudgetsResult,
    NodeInfo,
    OverrideBudgetParams,
    SetBudgetParams,
    SpendCounter,
)

if TYPE_CHECKING:
    from hypivisor.service import Service

NO_STATE = State()


class BudgetError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class BudgetDesk:
    def __init__(self, service: Service, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.service = service
        store = service.store
        self.ledger = Ledger(store)
        self.budgets = Budgets(service.config.budget_defaults, store)
        if store is not None:
            rows, seen, budgets, overrides = store.load_spend(now)
            self.ledger.restore(rows, seen)
            self.budgets.restore(budgets, overrides)
        self.states: dict[str, State] = {}
        self.cwd_of: dict[str, str] = {}
        self._day = self.ledger.day_of(now)
        self._unsynced: str | None = None

    # ------------------------------------------------------------------ reports
    def report(
        self, node: NodeInfo, counter: SpendCounter | None, now: float, registered: bool, sync_self: bool = True
    ) -> BudgetHold | None:
        """A register or heartbeat: count its spend, evaluate who it concerns; the hold for its answer.
        ``sync_self=False``: the node's attention report follows and brings its inbox items up to date."""
        self._unsynced = None if sync_self else node.id
        self.cwd_of[node.id] = node.cwd
        grew = counter is not None and self.ledger.record(node, counter, now)
        day = self.ledger.day_of(now)
        if day != self._day:
            self._day = day
            self._evaluate(list(self.cwd_of), now)
        elif grew:
            self._evaluate(self._sharing(node), now)
        if registered or node.id not in self.states:
            self._evaluate([node.id], now, force=registered)
        self._unsynced = None
        return self.states.get(node.id, NO_STATE).hold

    def _sharing(self, node: NodeInfo) -> list[str]:
        """The agents whose state this node's spend moves: itself, its folder, everyone under a day budget."""
        if self.budgets.has_day_limit():
            return list(self.cwd_of)
        return [nid for nid, cwd in self.cwd_of.items() if nid == node.id or cwd == node.cwd]

    def _evaluate(self, node_ids: list[str], now: float, force: bool = False) -> None:
        svc = self.service
        for nid in node_ids:
            if svc.registry.get(nid) is None:  # gone from the roster: forget it
                self.cwd_of.pop(nid, None)
                self.states.pop(nid, None)
                continue
            state = self.budgets.state(nid, self.cwd_of[nid], self.ledger, self._day)
            if not force and self.states.get(nid, NO_STATE) == state:
                continue
            self.states[nid] = state
            level = state.level
            svc.publish(svc.registry.set_budget(nid, level, state.percent if level else None,
                                                state.note if level else None))  # fmt: skip
            svc.hub.publish(svc.attention.set_own(nid, state.live(now), now, sync=nid != self._unsynced))

    def _changed(self, now: float) -> list[BaseModel]:
        self._day = self.ledger.day_of(now)
        self._evaluate(list(self.cwd_of), now)
        mine, _ = self.budgets.listing()
        return [BudgetChangedEvent(budgets=mine)]

    # ------------------------------------------------------------------ methods
    def get_spend(self, params: GetSpendParams, now: float) -> dict:
        since, today, rows = self.ledger.spend(params.group_by, params.days, now)
        return GetSpendResult(group_by=params.group_by, since=since, today=today, rows=rows).model_dump(mode="json")

    def get_totals(self, now: float) -> dict:
        return GetTotalsResult.model_validate(self.ledger.totals(now)).model_dump(mode="json")

    def list_budgets(self) -> dict:
        mine, defaults = self.budgets.listing()
        states = {nid: st.wire() for nid, st in self.states.items() if st.level is not None}
        return ListBudgetsResult(budgets=mine, defaults=defaults, states=states).model_dump(mode="json")

    def set_budget(self, params: SetBudgetParams, now: float) -> dict:
        key = (params.key or "").strip()
        if params.scope == "day":
            if key:
                raise BudgetError(ErrorCode.INVALID_PARAMS, "a day budget covers all agents: no key")
        elif not key:
            raise BudgetError(ErrorCode.INVALID_PARAMS, f"a {params.scope} budget needs its key (node id or path)")
        elif params.scope == "agent" and len(key) > 128:
            raise BudgetError(ErrorCode.INVALID_PARAMS, "key: a node id is at most 128 characters")
        self.budgets.set(params.scope, key, params.cost, params.tokens)
        events = self._changed(now)
        self.service.hub.publish(events)
        mine, defaults = self.budgets.listing()
        return {"status": "ok", "budgets": [b.model_dump(mode="json") for b in mine]}

    def override(self, params: OverrideBudgetParams, now: float) -> dict:
        """Lift a held agent's hold once (until a budget is crossed anew); not held: nothing to do."""
        nid = params.node_id
        if self.service.registry.get(nid) is None or nid not in self.cwd_of:
            raise BudgetError(ErrorCode.NOT_FOUND, f"unknown node {nid[:128]!r}")
        self._evaluate([nid], now)
        state = self.states.get(nid, NO_STATE)
        if state.level != "held":
            return {"status": "not_held", "node_id": nid, "state": state.wire().model_dump(mode="json")}
        self.budgets.override(nid, self._day, state.crossings)
        self._evaluate([nid], now)
        mine, _ = self.budgets.listing()
        self.service.hub.publish([BudgetChangedEvent(budgets=mine)])
        state = self.states.get(nid, NO_STATE)
        return {"status": "overridden", "node_id": nid, "state": state.wire().model_dump(mode="json")}
