"""Approvals through the registry: ``decide_approval`` on any hypivisor, the first decision wins (specs/cluster.md §5).

The agent's gate (the shim inside pi) stays the final judge; this module decides which registry decision is passed
to it, once, and keeps the shared record true to what the gate decided.

* **Pure part** (no I/O): :class:`OwnerBook` (which approvals of its own agents a hypivisor saw open, which decisions
  it already forwarded) and the record/message helpers. Unit-tested in ``hypivisor/tests/test_cluster_approvals.py``.
* **Cluster mode** (``--nats``): :class:`ApprovalsLink`, driven by :class:`hypivisor.cluster.link.ClusterLink`. The
  owner (the hypivisor holding the agent's registry connection) opens a record ``{state: pending, …}`` for each
  approval its agent's report lists, unless one exists (a new owner after a fail-over re-opens nothing); any
  hypivisor's ``decide_approval`` is a compare-and-set on it; the owner watches the site's records and forwards a
  decided one of its own open approvals to the bridge once (``approval_decision`` event on the registry
  connection). When an approval leaves the report, the owner writes the gate's real outcome (from the report's
  ``approvals_ended``): a compare-and-set when still pending (a decision in pi's terminal: a later
  ``decide_approval`` then conflicts), an overwrite when a decision that was forwarded was not the one the gate took.
* **One process** (no ``--nats``): :func:`decide` checks the approval is open in the agent's last report, keeps the
  first decision per approval in a small bounded ledger (one event loop: the check-and-set is atomic) and forwards it.
  Nothing else changes in one process: reports are not tracked, nothing is stored.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from pi_socket.errors import HypiError
from pi_socket.protocol import (
    ApprovalDecisionEvent,
    ApprovalEnded,
    AttentionLive,
    DecideApprovalParams,
    DecideApprovalResult,
    ErrorCode,
    HeartbeatParams,
    RegisterParams,
)

if TYPE_CHECKING:
    from hypivisor.cluster.backplane import Backplane
    from hypivisor.cluster.names import AgentKey
    from hypivisor.service import Service

log = structlog.get_logger(part="approvals")

Record = dict[str, Any]
MAX_FORWARDED = 10_000  # forwarded decisions remembered (an approval forgets its entry when it ends)
MAX_LEDGER = 10_000  # one process: decisions remembered per approval (oldest dropped first)
RECORD_WAIT_S = 1.0  # a decision for an approval the card shows pending waits this long for its record
MAX_QUEUE = 10_000  # cluster: record writes waiting (beyond: dropped with a warning; the next report retries opens)
RESOLVED = "resolved"  # the decision of a record whose approval ended without an outcome the bridge reported
SHELL_TOOLS = ("bash", "powershell")


# ---------------------------------------------------------------------------------------------------------------
# Pure part


def open_approvals(live: Iterable[AttentionLive]) -> dict[str, AttentionLive]:
    """The open approvals of one report: approval id → its live item."""
    return {item.approval_id: item for item in live if item.kind == "approval" and item.approval_id}


def pending_fields(node_id: str, item: AttentionLive) -> Record:
    """What the owner stores with a pending record (``open_approval`` adds state, owner and opened_at)."""
    return {"node_id": node_id, "tool": item.tool_name, "summary": item.summary, "asked_at": item.created_at}


def decision_of(params: DecideApprovalParams) -> Record:
    """The decision as stored and forwarded."""
    out: Record = {"decision": params.decision, "by": (params.by or "").strip()[:64] or "dashboard"}
    if params.reason is not None and params.reason.strip():
        out["reason"] = params.reason
    if params.input is not None:
        out["input"] = params.input
    return out


def outcome_of(ended: ApprovalEnded | None) -> Record:
    """The gate's real outcome as a stored decision (``resolved by agent`` when the bridge did not report it)."""
    if ended is None:
        return {"decision": RESOLVED, "by": "agent", "source": "agent"}
    out: Record = {"decision": ended.decision, "by": ended.by, "source": "agent"}
    if ended.reason:
        out["reason"] = ended.reason
    return out


def agrees(record: Record | None, ended: ApprovalEnded | None) -> bool:
    """The stored decided record already says what the gate did (its forwarded decision was the one taken)."""
    if record is None or record.get("state") != "decided":
        return False
    decision = record.get("decision") or {}
    if ended is None:  # nothing to correct it with
        return True
    return decision.get("decision") == ended.decision and ended.by == "dashboard"


def winner_text(record: Record) -> str:
    """``allow by alice on hv-2``: who decided a record (for the loser's 1013)."""
    d = record.get("decision") or {}
    where = record.get("decided_by_hv")
    return f"{d.get('decision')!s} by {d.get('by')!s}" + (f" on {where}" if where else "")


def input_problem(params: DecideApprovalParams, tool: str | None) -> str | None:
    """Why an edited input cannot apply (the bridge and the gate check it again), or None."""
    if params.input is None:
        return None
    command = params.input.get("command")
    if params.decision != "allow" or (tool is not None and tool not in SHELL_TOOLS):
        return "only an allowed bash call takes an edited input"
    if set(params.input) != {"command"} or not isinstance(command, str) or not command.strip():
        return "input must be {command: <the command to run>}"
    return None


def event_frame(node_id: str, approval_id: str, decision: Record) -> bytes:
    """The ``approval_decision`` event a bridge gets on its registry connection."""
    event = ApprovalDecisionEvent(
        node_id=node_id,
        id=approval_id,
        decision=decision["decision"],
        reason=decision.get("reason"),
        input=decision.get("input"),
        by=decision.get("by"),
    )
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


@dataclass(frozen=True)
class Gone:
    """An approval that left the agent's report, with the gate's outcome when the bridge reported it."""

    approval_id: str
    ended: ApprovalEnded | None


class OwnerBook:
    """A hypivisor's own agents' open approvals (as their reports list them) and the decisions it forwarded.

    Drive it from one event loop. ``report`` says which approvals are new (open or check their record) and which
    ended (write the outcome); ``take_forward`` says once per approval whether to pass a decision to the bridge."""

    def __init__(self, max_forwarded: int = MAX_FORWARDED) -> None:
        self.open: dict[str, dict[str, AttentionLive]] = {}  # node id → approval id → live item
        self.max_forwarded = max_forwarded
        self._forwarded: OrderedDict[tuple[str, str], None] = OrderedDict()

    def report(
        self, node_id: str, live: Iterable[AttentionLive], ended: Iterable[ApprovalEnded] | None, fresh: bool = False
    ) -> tuple[list[AttentionLive], list[Gone]]:
        """``fresh``: a (re-)registration, whose connection is new: every open approval is checked again (a decision
        not delivered before is forwarded now) and every reported outcome is written (it may have ended while no
        hypivisor held the agent, e.g. after its owner died)."""
        now_open = open_approvals(live)
        before = self.open.get(node_id, {})
        outcomes = {e.id: e for e in ended or ()}
        if fresh:
            for key in [k for k in self._forwarded if k[0] == node_id]:
                del self._forwarded[key]
            new = list(now_open.values())
            gone_ids = [i for i in {**before, **outcomes} if i not in now_open]
        else:
            new = [item for approval_id, item in now_open.items() if approval_id not in before]
            gone_ids = [i for i in before if i not in now_open]
        gone = [Gone(approval_id, outcomes.get(approval_id)) for approval_id in gone_ids]
        if now_open:
            self.open[node_id] = now_open
        else:
            self.open.pop(node_id, None)
        for g in gone:
            self._forwarded.pop((node_id, g.approval_id), None)
        return new, gone

    def is_open(self, node_id: str, approval_id: str) -> bool:
        return approval_id in self.open.get(node_id, {})

    def tool_of(self, node_id: str, approval_id: str) -> str | None:
        item = self.open.get(node_id, {}).get(approval_id)
        return None if item is None else item.tool_name

    def wants_forward(self, node_id: str, approval_id: str, record: Record) -> bool:
        """A decided record of an approval open here that was not passed to the bridge yet."""
        if record.get("state") != "decided" or not self.is_open(node_id, approval_id):
            return False
        decision = record.get("decision") or {}
        if decision.get("source") == "agent" or decision.get("decision") not in ("allow", "deny"):
            return False  # the gate's own outcome, written back: nothing to pass on
        return (node_id, approval_id) not in self._forwarded

    def forwarded(self, node_id: str, approval_id: str) -> None:
        """It reached the bridge's connection: never again while the approval stays open here."""
        self._forwarded[(node_id, approval_id)] = None
        while len(self._forwarded) > self.max_forwarded:
            self._forwarded.popitem(last=False)

    def take_forward(self, node_id: str, approval_id: str, record: Record) -> bool:
        """True once for a decided record of an approval open here (forward it now); False otherwise."""
        if not self.wants_forward(node_id, approval_id, record):
            return False
        self.forwarded(node_id, approval_id)
        return True

    def forget(self, node_id: str) -> None:
        """The agent is no longer this hypivisor's (it left, or registered elsewhere): its records stay in the
        store (a pending one for its next owner)."""
        self.open.pop(node_id, None)
        for key in [k for k in self._forwarded if k[0] == node_id]:
            del self._forwarded[key]


class Ledger:
    """One process: the first decision per approval (node id, approval id) → record; bounded, oldest dropped."""

    def __init__(self, max_entries: int = MAX_LEDGER) -> None:
        self.max_entries = max_entries
        self._decided: OrderedDict[tuple[str, str], Record] = OrderedDict()

    def decide(self, node_id: str, approval_id: str, decision: Record) -> Record | None:
        """None when this decision is the first (recorded now); else the winner's record."""
        key = (node_id, approval_id)
        winner = self._decided.get(key)
        if winner is not None:
            return winner
        self._decided[key] = {"state": "decided", "decision": decision, "decided_at": time.time()}
        while len(self._decided) > self.max_entries:
            self._decided.popitem(last=False)
        return None


# ---------------------------------------------------------------------------------------------------------------
# I/O glue


def _fail(code: int, message: str) -> HypiError:
    return HypiError(code, message)


def _forward(service: Service, node_id: str, approval_id: str, decision: Record) -> bool:
    """Push the decision down the node's registry connection (its bridge applies it); False when not connected."""
    entry = service.registry.get(node_id)
    send = service.senders.get(entry.owner) if entry is not None and entry.owner is not None else None
    if send is None:
        return False
    ok = bool(send(event_frame(node_id, approval_id, decision)))
    log.info("approval decision forwarded", node_id=node_id[:128], approval=approval_id[:128],
             decision=decision.get("decision"), by=str(decision.get("by"))[:64], sent=ok)  # fmt: skip
    return ok


def _check_capable(capabilities: list[str] | None, node_id: str) -> None:
    if capabilities is None or "approval_events" not in capabilities:  # no list: a bridge older than both
        raise _fail(
            ErrorCode.UNSUPPORTED,
            f"agent {node_id[:64]!r} runs an older pi-socket that cannot take a decision through the registry: "
            "decide on its agent link (approval_decision), or update pi-socket",
        )


_ledgers: weakref.WeakKeyDictionary[Any, Ledger] = weakref.WeakKeyDictionary()


async def decide(service: Service, params: DecideApprovalParams) -> dict[str, Any]:
    """``decide_approval``: through the cluster's records with ``--nats``, else in this process."""
    if service.cluster is not None:
        return await service.cluster.approvals.decide(params)
    entry = service.registry.get(params.node_id)
    if entry is None:
        raise _fail(ErrorCode.NOT_FOUND, f"no agent {params.node_id[:64]!r} on the roster")
    _check_capable(entry.node.capabilities, params.node_id)
    item = open_approvals(service.attention.reported(params.node_id)).get(params.approval_id)
    if item is None:
        raise _fail(
            ErrorCode.CONFLICT,
            f"no open approval {params.approval_id[:128]!r} on agent {params.node_id[:64]!r} "
            "(never asked, or already decided, aborted or timed out)",
        )
    problem = input_problem(params, item.tool_name)
    if problem is not None:
        raise _fail(ErrorCode.INVALID_PARAMS, f"decision not applied: {problem}")
    decision = decision_of(params)
    ledger = _ledgers.get(service)
    if ledger is None:
        ledger = _ledgers[service] = Ledger()
    winner = ledger.decide(params.node_id, params.approval_id, decision)
    if winner is not None:
        raise _fail(ErrorCode.CONFLICT, f"already decided ({winner_text(winner)})")
    if not _forward(service, params.node_id, params.approval_id, decision):
        raise _fail(ErrorCode.AGENT_UNAVAILABLE, f"agent {params.node_id[:64]!r} is not connected now")
    return DecideApprovalResult(decision=params.decision, by=decision["by"]).model_dump(mode="json", exclude_none=True)


class ApprovalsLink:
    """Cluster mode: one hypivisor's part in the shared approvals (see the module docstring)."""

    def __init__(self, service: Service, backplane: Backplane, site: str) -> None:
        self.service = service
        self.backplane = backplane
        self.site = site
        self.book = OwnerBook()
        self._keys: dict[str, AgentKey] = {}  # own node id → its key
        self._queue: asyncio.Queue[tuple[str, AgentKey, str, Any]] = asyncio.Queue(MAX_QUEUE)
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.backplane.watch_approvals(self._on_record)
        self._worker = asyncio.create_task(self._work(), name="cluster-approvals")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    # -- the owner's reports ---------------------------------------------------------------------------------------
    def report(self, key: AgentKey, params: RegisterParams | HeartbeatParams) -> None:
        """An own agent's register/heartbeat (with its attention report): open new records, write ended ones (a
        register checks everything again, :meth:`OwnerBook.report`)."""
        if params.attention is None:
            return
        self._keys[key.agent] = key
        fresh = isinstance(params, RegisterParams)
        new, gone = self.book.report(key.agent, params.attention.live, params.approvals_ended, fresh)
        for item in new:
            self._enqueue("seen", key, item.approval_id or "", pending_fields(key.agent, item))
        for g in gone:
            self._enqueue("ended", key, g.approval_id, g.ended)

    def forget(self, node_id: str) -> None:
        self._keys.pop(node_id, None)
        self.book.forget(node_id)

    def _enqueue(self, op: str, key: AgentKey, approval_id: str, data: Any) -> None:
        try:
            self._queue.put_nowait((op, key, approval_id, data))
        except asyncio.QueueFull:
            log.warning("approval write dropped: too many waiting", op=op, approval=approval_id[:128])

    async def _work(self) -> None:
        while True:
            op, key, approval_id, data = await self._queue.get()
            try:
                if op == "seen":
                    await self._seen(key, approval_id, data)
                else:
                    await self._ended(key, approval_id, data)
            except Exception as exc:  # noqa: BLE001 - one failed write must not stop the others
                log.warning("approval record write failed", op=op, node_id=key.agent[:128], approval=approval_id[:128],
                            error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    async def _seen(self, key: AgentKey, approval_id: str, fields: Record) -> None:
        """A newly open approval: open its record unless one exists; a decision made meanwhile is forwarded."""
        record = await self.backplane.get_approval(key, approval_id)
        if record is None:
            await self.backplane.open_approval(key, approval_id, fields)
        else:
            self._on_record(key, approval_id, record)

    async def _ended(self, key: AgentKey, approval_id: str, ended: ApprovalEnded | None) -> None:
        """The approval left the report: the record says what the gate decided (first wins for everyone else)."""
        from hypivisor.cluster.backplane import ApprovalConflict, ApprovalUnknown

        outcome = outcome_of(ended)
        try:
            await self.backplane.decide_approval(key, approval_id, outcome)
            return
        except ApprovalUnknown:
            return  # never opened (it ended before its record was written): nobody can decide it anyway
        except ApprovalConflict as exc:
            winner = exc.winner
        if not agrees(winner, ended) and ended is not None:
            log.info("approval record corrected: the agent's gate decided otherwise", node_id=key.agent[:128],
                     approval=approval_id[:128], recorded=winner_text(winner), gate=f"{ended.decision} by {ended.by}")  # fmt: skip
            corrected = {**winner, "decision": outcome, "decided_by_hv": self.backplane.hv_id,
                         "decided_at": time.time(), "overrode": winner.get("decision")}  # fmt: skip
            await self.backplane.overwrite_approval(key, approval_id, corrected)

    # -- decided records → the bridge ------------------------------------------------------------------------------
    def _on_record(self, key: AgentKey, approval_id: str, record: Record) -> None:
        if key.site != self.site or self._keys.get(key.agent) != key:
            return
        if self.service.registry.get(key.agent) is None:
            return
        if self.book.wants_forward(key.agent, approval_id, record):
            if _forward(self.service, key.agent, approval_id, record.get("decision") or {}):
                self.book.forwarded(key.agent, approval_id)

    # -- decide_approval on this hypivisor -------------------------------------------------------------------------
    async def _decide_when_recorded(self, key: Any, approval_id: str, decision: Record, pending: int) -> Record:
        """The owner writes an approval's record from the agent's report, beside its roster record: a dashboard may
        see the card's pending approval a moment before the record is there. While the card says one is pending,
        an unknown approval is tried again for up to ``RECORD_WAIT_S`` before it is "not yet recorded"."""
        from hypivisor.cluster.backplane import ApprovalUnknown

        deadline = time.monotonic() + (RECORD_WAIT_S if pending else 0.0)
        while True:
            try:
                return await self.backplane.decide_approval(key, approval_id, decision)
            except ApprovalUnknown:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.05)

    async def decide(self, params: DecideApprovalParams) -> dict[str, Any]:
        from hypivisor.cluster.backplane import ApprovalConflict, ApprovalUnknown, BackplaneError
        from hypivisor.cluster.names import AgentKey

        node_id = params.node_id
        entry = self.service.registry.get(node_id)
        remote = None if entry is not None else self.service.cluster.remote(node_id)
        if entry is not None:
            node = entry.node
        elif remote is not None:
            node = remote.node
        else:
            raise _fail(ErrorCode.NOT_FOUND, f"no agent {node_id[:64]!r} on the cluster's roster")
        _check_capable(node.capabilities, node_id)
        key = self._keys.get(node_id) if entry is not None else None
        key = key or AgentKey(self.site, remote.machine if remote is not None else node.machine, node_id)
        tool = self.book.tool_of(node_id, params.approval_id)
        problem = input_problem(params, tool)
        if problem is not None:
            raise _fail(ErrorCode.INVALID_PARAMS, f"decision not applied: {problem}")
        decision = decision_of(params)
        try:
            record = await self._decide_when_recorded(key, params.approval_id, decision, node.pending_approvals)
        except ApprovalUnknown:
            raise _fail(
                ErrorCode.CONFLICT,
                f"no open approval {params.approval_id[:128]!r} on agent {node_id[:64]!r} "
                "(never asked, or not yet recorded)",
            ) from None
        except ApprovalConflict as exc:
            raise _fail(ErrorCode.CONFLICT, f"already decided ({winner_text(exc.winner)})") from None
        except BackplaneError as exc:
            raise _fail(ErrorCode.AGENT_UNAVAILABLE, f"the decision could not be recorded, retry: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the store is electing a leader, or unreachable: say so, retry
            raise _fail(
                ErrorCode.AGENT_UNAVAILABLE, f"the decision could not be recorded, retry: {type(exc).__name__}: {exc}"
            ) from None
        self._on_record(key, params.approval_id, record)  # the owner forwards at once (the watch would too)
        return DecideApprovalResult(decision=params.decision, by=decision["by"], hv=self.backplane.hv_id).model_dump(
            mode="json", exclude_none=True
        )
