"""Spend and budgets: what every agent spent, per day, machine, folder and agent, and what it may spend. Pure
(specs/budgets.md).

Each bridge reports with every register and heartbeat a :class:`SpendCounter`: the cost and tokens its pi spent
since that bridge started (``boot``). The :class:`Ledger` adds the growth of each ``(node, boot)`` counter to
the row of ``(local day, machine, folder, node)``; the last counter seen is kept with the row (one transaction),
so a hypivisor restart, a re-register or a repeated heartbeat never counts anything twice, and a new bridge (a
new boot) starts from zero.

Budgets limit a day's spend (cost and/or tokens) of one agent, of one folder, or of all agents together
(``day``); a default for each scope comes from the hypivisor's flags. :func:`evaluate` turns the spend of an
agent's scopes into its state: ``near`` at 80 %, ``held`` at 100 % (its runs are aborted, its prompts held), or
``over`` when a person overrode the hold (until another budget is crossed, the budget is raised and reached
again, or the day ends).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pi_socket.protocol import AttentionLive, Budget, BudgetHold, NodeBudgetState, NodeInfo, SpendCounter

NEAR = 0.8
SCOPES = ("agent", "folder", "day")
SCOPE_WORDS = {"agent": "this agent's budget", "folder": "the folder's budget", "day": "the day's budget (all agents)"}
MAX_SEEN = 50_000  # counters remembered in memory (a bound; the oldest go first)


def local_day(now: float) -> str:
    """The hypivisor's local calendar day of ``now`` (YYYY-MM-DD): budgets are per day as people count days."""
    return time.strftime("%Y-%m-%d", time.localtime(now))


def day_minus(day: str, n: int) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=n)).isoformat()


@dataclass
class Amount:
    cost: float = 0.0
    tokens: int = 0

    def add(self, cost: float, tokens: int) -> None:
        self.cost += cost
        self.tokens += tokens


Limits = tuple[float | None, int | None]  # (cost, tokens); None = no limit on that measure


class SpendSink(Protocol):
    def spend_recorded(
        self, day: str, machine: str, cwd: str, node_id: str, label: str | None, row: Amount,
        boot: str, seen_cost: float, seen_tokens: int, at: float,
    ) -> None: ...  # fmt: skip
    def budget_put(self, scope: str, key: str, cost: float | None, tokens: int | None) -> None: ...
    def override_put(self, node_id: str, day: str, crossings: list[str]) -> None: ...


class NullSpendSink:
    def spend_recorded(self, *args: object) -> None:
        pass

    def budget_put(self, scope: str, key: str, cost: float | None, tokens: int | None) -> None:
        pass

    def override_put(self, node_id: str, day: str, crossings: list[str]) -> None:
        pass


@dataclass
class Row:
    machine: str
    cwd: str
    node_id: str
    day: str
    amount: Amount = field(default_factory=Amount)


class Ledger:
    """Spend per (day, machine, folder, node), with indexes for the budget checks (today's spend of a node, a
    folder, everyone)."""

    def __init__(self, sink: SpendSink | None = None, day_of: Callable[[float], str] = local_day) -> None:
        self.sink: SpendSink = sink or NullSpendSink()
        self.day_of = day_of
        self.rows: dict[tuple[str, str, str, str], Row] = {}
        self.labels: dict[str, tuple[str | None, str]] = {}  # node id → (session name, machine), the latest
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._node_day: dict[tuple[str, str], Amount] = {}
        self._cwd_day: dict[tuple[str, str], Amount] = {}
        self._day: dict[str, Amount] = {}

    def restore(self, rows: Iterable[tuple[str, str, str, str, str | None, float, int]],
                seen: Iterable[tuple[str, str, float, int]]) -> None:  # fmt: skip
        """Rebuild from the store: rows ``(day, machine, cwd, node, label, cost, tokens)`` and the last counters."""
        for day, machine, cwd, node_id, label, cost, tokens in rows:
            self._add(day, machine, cwd, node_id, float(cost), int(tokens))
            self.labels[node_id] = (label, machine)
        for node_id, boot, cost, tokens in seen:
            self.seen[(node_id, boot)] = (float(cost), int(tokens))

    def _add(self, day: str, machine: str, cwd: str, node_id: str, cost: float, tokens: int) -> Row:
        row = self.rows.get((day, machine, cwd, node_id))
        if row is None:
            row = self.rows[(day, machine, cwd, node_id)] = Row(machine, cwd, node_id, day)
        row.amount.add(cost, tokens)
        self._node_day.setdefault((node_id, day), Amount()).add(cost, tokens)
        self._cwd_day.setdefault((cwd, day), Amount()).add(cost, tokens)
        self._day.setdefault(day, Amount()).add(cost, tokens)
        return row

    def record(self, node: NodeInfo, counter: SpendCounter, now: float) -> bool:
        """One report of a node's counter; True when its spend grew (the growth went into today's row).

        The growth of each measure is counted on its own and never negative: a counter that went down (it
        cannot, for one boot) only moves the baseline, so nothing is ever counted twice."""
        key = (node.id, counter.boot)
        last_cost, last_tokens = self.seen.get(key, (0.0, 0))
        d_cost = max(0.0, counter.cost - last_cost)
        d_tokens = max(0, counter.tokens - last_tokens)
        self.labels[node.id] = (node.session_name, node.machine)
        if key not in self.seen and len(self.seen) >= MAX_SEEN:
            del self.seen[next(iter(self.seen))]
        self.seen[key] = (counter.cost, counter.tokens)
        if d_cost <= 0 and d_tokens <= 0:
            return False  # nothing new (a repeated report; a counter below its baseline only moves it)
        day = self.day_of(now)
        row = self._add(day, node.machine, node.cwd, node.id, d_cost, d_tokens)
        self.sink.spend_recorded(day, node.machine, node.cwd, node.id, node.session_name, row.amount,
                                 counter.boot, counter.cost, counter.tokens, now)  # fmt: skip
        return True

    # ------------------------------------------------------------------ views
    def node_today(self, node_id: str, day: str) -> Amount:
        return self._node_day.get((node_id, day)) or Amount()

    def folder_today(self, cwd: str, day: str) -> Amount:
        return self._cwd_day.get((cwd, day)) or Amount()

    def all_today(self, day: str) -> Amount:
        return self._day.get(day) or Amount()

    def spend(self, group_by: str, days: int, now: float) -> tuple[str, str, list[dict]]:
        """(first day, today, rows) of the last ``days`` days grouped by agent, folder, machine or day."""
        today = self.day_of(now)
        since = day_minus(today, days - 1)
        groups: dict[str, Amount] = {}
        if group_by == "day":  # one row per day, the empty ones too: the chart's x axis
            for n in range(days - 1, -1, -1):
                groups[day_minus(today, n)] = Amount()
        for row in self.rows.values():
            if not since <= row.day <= today:
                continue
            key = {"agent": row.node_id, "folder": row.cwd, "machine": row.machine, "day": row.day}[group_by]
            groups.setdefault(key, Amount()).add(row.amount.cost, row.amount.tokens)
        out = []
        for key, amount in groups.items():
            item: dict = {"key": key, "cost": round(amount.cost, 6), "tokens": amount.tokens}
            if group_by == "agent":
                label, machine = self.labels.get(key, (None, None))
                item["label"], item["machine"] = label, machine
            out.append(item)
        if group_by != "day":
            out.sort(key=lambda r: (-r["cost"], -r["tokens"], r["key"]))
        return since, today, out

    def totals(self, now: float) -> dict:
        """Today and all time: everyone, per machine, per folder."""
        today = self.day_of(now)
        total, all_today = Amount(), Amount()
        machines: dict[str, tuple[Amount, Amount]] = {}
        folders: dict[str, tuple[Amount, Amount]] = {}
        for row in self.rows.values():
            a = row.amount
            total.add(a.cost, a.tokens)
            for key, per in ((row.machine, machines), (row.cwd, folders)):
                t_day, t_all = per.setdefault(key, (Amount(), Amount()))
                t_all.add(a.cost, a.tokens)
                if row.day == today:
                    t_day.add(a.cost, a.tokens)
            if row.day == today:
                all_today.add(a.cost, a.tokens)

        def money(a: Amount) -> dict:
            return {"cost": round(a.cost, 6), "tokens": a.tokens}

        def table(t: dict[str, tuple[Amount, Amount]]) -> list[dict]:
            rows = [{"key": k, "today": money(d), "all_time": money(a)} for k, (d, a) in t.items()]
            return sorted(rows, key=lambda r: (-r["all_time"]["cost"], -r["all_time"]["tokens"], r["key"]))

        return {"day": today, "today": money(all_today), "all_time": money(total),
                "by_machine": table(machines), "by_folder": table(folders)}  # fmt: skip


# ---------------------------------------------------------------------------- budget state


@dataclass(frozen=True)
class State:
    """An agent's budget state: ``level`` None below 80 %."""

    level: str | None = None
    percent: float = 0.0
    note: str | None = None
    scope: str | None = None
    crossings: frozenset[str] = frozenset()
    overridden: bool = False

    @property
    def hold(self) -> BudgetHold | None:
        if self.level != "held" or self.scope is None:
            return None
        return BudgetHold(reason=f"{self.note} reached: raise it or override once", scope=self.scope)

    def wire(self) -> NodeBudgetState:
        return NodeBudgetState(level=self.level, percent=self.percent, note=self.note,
                               overridden=self.overridden)  # fmt: skip

    def live(self, now: float) -> list[AttentionLive]:
        """The inbox item this state calls for: near and held each make one (an override needs none)."""
        if self.level == "near":
            summary = f"{self.note}: {self.percent:.0f} % used"
        elif self.level == "held":
            summary = f"{self.note} reached ({self.percent:.0f} %): runs aborted, prompts held"
        else:
            return []
        return [AttentionLive(kind="budget", key=self.level, summary=summary[:300], created_at=now)]


def _fmt(measure: str, value: float) -> str:
    return f"${value:,.4g}" if measure == "cost" else f"{int(value):,} tokens"


def evaluate(checks: Iterable[tuple[str, str, Amount, Limits]], day: str, overridden: frozenset[str]) -> State:
    """The state of one agent from its scopes' ``(scope, key, spent today, limits)``.

    The most used limit decides the level and the note; every limit at 100 % or more is a crossing. Held when a
    crossing is not among those a person overrode (an override covers exactly the crossings of its moment: a
    raised limit, another scope, another day are new crossings)."""
    worst, note, scope = 0.0, None, None
    crossings: set[str] = set()
    for sc, key, spent, (cost, tokens) in checks:
        for measure, limit, used in (("cost", cost, spent.cost), ("tokens", tokens, spent.tokens)):
            if limit is None or limit <= 0:
                continue
            frac = used / limit
            if frac >= 1:
                crossings.add(f"{day}|{sc}|{key}|{measure}|{limit}")
            if frac > worst:
                worst, scope = frac, sc
                note = f"{SCOPE_WORDS[sc]} of {_fmt(measure, limit)}"
    pct = round(worst * 100, 1)
    if worst < NEAR:
        return State(percent=pct)
    if worst < 1:
        return State("near", pct, note, scope)
    held = not crossings <= overridden
    return State("held" if held else "over", pct, note, scope, frozenset(crossings), overridden=not held)


class Budgets:
    """Budgets set in a dashboard (over the defaults from the flags) and the overrides of the day."""

    def __init__(self, defaults: dict[str, Limits] | None = None, sink: SpendSink | None = None) -> None:
        self.defaults = {k: v for k, v in (defaults or {}).items() if v != (None, None)}
        self.sink: SpendSink = sink or NullSpendSink()
        self.explicit: dict[tuple[str, str], Limits] = {}
        self.overrides: dict[str, tuple[str, frozenset[str]]] = {}

    def restore(self, budgets: Iterable[tuple[str, str, float | None, int | None]],
                overrides: Iterable[tuple[str, str, list[str]]]) -> None:  # fmt: skip
        for scope, key, cost, tokens in budgets:
            if scope in SCOPES:
                self.explicit[(scope, key)] = (cost, tokens)
        for node_id, day, crossings in overrides:
            self.overrides[node_id] = (day, frozenset(crossings))

    def set(self, scope: str, key: str, cost: float | None, tokens: int | None) -> None:
        if cost is None and tokens is None:
            self.explicit.pop((scope, key), None)
        else:
            self.explicit[(scope, key)] = (cost, tokens)
        self.sink.budget_put(scope, key, cost, tokens)

    def limits(self, scope: str, key: str) -> Limits | None:
        return self.explicit.get((scope, key)) or self.defaults.get(scope)

    def listing(self) -> tuple[list[Budget], list[Budget]]:
        mine = [Budget(scope=s, key=k, cost=c, tokens=t) for (s, k), (c, t) in sorted(self.explicit.items())]
        defaults = [Budget(scope=s, key="", cost=c, tokens=t, default=True) for s, (c, t) in self.defaults.items()]
        return mine, defaults

    def has_day_limit(self) -> bool:
        return self.limits("day", "") is not None

    def overridden(self, node_id: str, day: str) -> frozenset[str]:
        got = self.overrides.get(node_id)
        return got[1] if got is not None and got[0] == day else frozenset()

    def override(self, node_id: str, day: str, crossings: frozenset[str]) -> None:
        self.overrides[node_id] = (day, crossings)
        self.sink.override_put(node_id, day, sorted(crossings))

    def state(self, node_id: str, cwd: str, ledger: Ledger, day: str) -> State:
        checks = []
        for scope, key, spent in (
            ("agent", node_id, ledger.node_today(node_id, day)),
            ("folder", cwd, ledger.folder_today(cwd, day)),
            ("day", "", ledger.all_today(day)),
        ):
            limits = self.limits(scope, key)
            if limits is not None:
                checks.append((scope, key, spent, limits))
        return evaluate(checks, day, self.overridden(node_id, day))
