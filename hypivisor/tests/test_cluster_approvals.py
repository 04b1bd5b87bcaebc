"""Approvals through the registry (hypivisor/cluster/approvals.py): the pure book and helpers, and the owner's
record writes over an in-process backplane (specs/cluster.md §5)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from hypivisor.cluster.approvals import (
    RESOLVED,
    ApprovalsLink,
    Ledger,
    OwnerBook,
    agrees,
    decision_of,
    event_frame,
    input_problem,
    outcome_of,
    pending_fields,
    winner_text,
)
from hypivisor.cluster.backplane import InProcessBackplane, InProcessHub, Settings
from hypivisor.cluster.names import AgentKey
from pi_socket.protocol import (
    ApprovalEnded,
    AttentionLive,
    AttentionReport,
    DecideApprovalParams,
    HeartbeatParams,
    NodeInfo,
    RegisterParams,
)


def live(approval_id: str, tool: str = "bash") -> AttentionLive:
    return AttentionLive(kind="approval", key=approval_id, summary=f"run {approval_id}", created_at=1.0,
                         approval_id=approval_id, tool_name=tool)  # fmt: skip


def hb(live_items: list[AttentionLive], ended: list[ApprovalEnded] | None = None) -> HeartbeatParams:
    return HeartbeatParams(id="n1", attention=AttentionReport(live=live_items), approvals_ended=ended)


def reg(live_items: list[AttentionLive], ended: list[ApprovalEnded] | None = None) -> RegisterParams:
    return RegisterParams(id="n1", machine="m", cwd="/w", port=4000, attention=AttentionReport(live=live_items),
                          approvals_ended=ended)  # fmt: skip


def params(**kw: Any) -> DecideApprovalParams:
    return DecideApprovalParams.model_validate({"node_id": "n1", "approval_id": "a1", "decision": "allow", **kw})


def test_the_book_says_which_approvals_are_new_and_which_ended_with_their_outcome() -> None:
    book = OwnerBook()
    new, gone = book.report("n1", [live("a1"), AttentionLive(kind="stalled", key="s", summary="x", created_at=1)], None)
    assert [i.approval_id for i in new] == ["a1"] and gone == []
    new, gone = book.report("n1", [live("a1"), live("a2")], None)  # a heartbeat again: only a2 is new
    assert [i.approval_id for i in new] == ["a2"] and gone == []
    ended = [ApprovalEnded(id="a1", decision="deny", by="terminal")]
    new, gone = book.report("n1", [live("a2")], ended)
    assert new == [] and [(g.approval_id, g.ended.by if g.ended else None) for g in gone] == [("a1", "terminal")]
    new, gone = book.report("n1", [], None)  # an older bridge: no outcome
    assert [(g.approval_id, g.ended) for g in gone] == [("a2", None)] and "n1" not in book.open


def test_a_decided_record_is_forwarded_once_and_only_while_its_approval_is_open_here() -> None:
    book = OwnerBook()
    decided = {"state": "decided", "decision": {"decision": "allow", "by": "alice"}}
    assert not book.take_forward("n1", "a1", decided)  # not open here (another hypivisor's agent, or ended)
    book.report("n1", [live("a1")], None)
    assert not book.take_forward("n1", "a1", {"state": "pending"})
    assert book.take_forward("n1", "a1", decided)
    assert not book.take_forward("n1", "a1", decided)  # once
    # the gate's own outcome written back is never passed on
    book.report("n1", [live("a2")], None)
    assert not book.take_forward("n1", "a2", {"state": "decided", "decision": outcome_of(None)})
    book.forget("n1")
    assert not book.is_open("n1", "a2")


def test_the_forwarded_memory_is_bounded() -> None:
    book = OwnerBook(max_forwarded=3)
    book.report("n1", [live(f"a{i}") for i in range(10)], None)
    for i in range(10):
        assert book.take_forward("n1", f"a{i}", {"state": "decided", "decision": {"decision": "deny", "by": "x"}})
    assert len(book._forwarded) == 3


def test_records_decisions_and_messages() -> None:
    assert decision_of(params(by="  alice ", reason="  ")) == {"decision": "allow", "by": "alice"}
    assert decision_of(params(decision="deny", reason="no")) == {"decision": "deny", "by": "dashboard", "reason": "no"}
    assert outcome_of(None) == {"decision": RESOLVED, "by": "agent", "source": "agent"}
    assert outcome_of(ApprovalEnded(id="a", decision="deny", by="timeout", reason="late"))["reason"] == "late"
    won = {"state": "decided", "decision": {"decision": "allow", "by": "dashboard"}, "decided_by_hv": "hv-2"}
    assert winner_text(won) == "allow by dashboard on hv-2"
    assert agrees(won, ApprovalEnded(id="a", decision="allow", by="dashboard"))
    assert not agrees(won, ApprovalEnded(id="a", decision="allow", by="terminal"))  # the terminal was first
    assert not agrees(won, ApprovalEnded(id="a", decision="deny", by="dashboard"))
    assert not agrees({"state": "pending"}, None) and agrees(won, None)
    assert input_problem(params(input={"command": "ls"}), "bash") is None
    assert input_problem(params(input={"command": "ls"}), "write") is not None
    assert input_problem(params(decision="deny", input={"command": "ls"}), None) is not None
    assert input_problem(params(input={"command": " "}), "bash") is not None
    frame = orjson.loads(event_frame("n1", "a1", {"decision": "deny", "by": "bob", "reason": "no"}))
    assert frame == {"event": "approval_decision", "node_id": "n1", "id": "a1", "decision": "deny", "reason": "no",
                     "by": "bob"}  # fmt: skip


def test_decide_params_are_strict() -> None:
    with pytest.raises(ValueError):
        params(decision="yes")
    with pytest.raises(ValueError):
        params(approval_id="")


def test_the_ledger_keeps_the_first_decision() -> None:
    ledger = Ledger(max_entries=2)
    assert ledger.decide("n1", "a1", {"decision": "allow", "by": "a"}) is None
    assert winner_text(ledger.decide("n1", "a1", {"decision": "deny", "by": "b"}) or {}) == "allow by a"
    ledger.decide("n1", "a2", {"decision": "deny", "by": "b"})
    ledger.decide("n1", "a3", {"decision": "deny", "by": "b"})
    assert len(ledger._decided) == 2


class FakeRegistry:
    def __init__(self) -> None:
        self.nodes: dict[str, Any] = {}

    def get(self, node_id: str) -> Any:
        return self.nodes.get(node_id)


class FakeService:
    """What the approvals module reads of the hypivisor's Service."""

    def __init__(self, registry: FakeRegistry, senders: dict[str, Any]) -> None:
        self.registry = registry
        self.senders = senders
        self.cluster: Any = None
        self.attention: Any = None


def owner_service(sent: list[dict]) -> FakeService:
    """A hypivisor's registry holding n1 on one connection whose frames are collected."""
    registry = FakeRegistry()
    node = NodeInfo(id="n1", machine="m", cwd="/w", port=4000, capabilities=["approval_events"])
    registry.nodes["n1"] = SimpleNamespace(node=node, owner="conn")
    return FakeService(registry, {"conn": lambda b: sent.append(orjson.loads(b)) or True})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_owner_opens_forwards_once_and_writes_the_gates_outcome() -> None:
    hub = InProcessHub()
    a = InProcessBackplane(Settings("hv-a", "main"), hub)
    b = InProcessBackplane(Settings("hv-b", "main"), hub)
    hub.backplanes += [a, b]  # on one hub, as start() would attach them (no sweeper needed here)
    sent: list[dict] = []
    link = ApprovalsLink(owner_service(sent), a, "main")  # type: ignore[arg-type]
    await link.start()
    key = AgentKey("main", "m", "n1")
    try:
        link.report(key, hb([live("a1"), live("a2")], None))
        await settle()
        assert (await a.get_approval(key, "a1"))["state"] == "pending"
        assert (await a.get_approval(key, "a1"))["tool"] == "bash"
        # a decision on another hypivisor reaches the owner's watch and goes to the bridge once
        await b.decide_approval(key, "a1", {"decision": "allow", "by": "alice"})
        await settle()
        assert [(e["id"], e["decision"], e["by"]) for e in sent] == [("a1", "allow", "alice")]
        link.report(key, hb([live("a1"), live("a2")], None))  # a heartbeat before the gate answered: nothing again
        await settle()
        assert len(sent) == 1
        # the terminal answered a2 first: the owner writes it, and a later decision conflicts naming it
        link.report(key, hb([live("a1")], [ApprovalEnded(id="a2", decision="deny", by="terminal")]))
        await settle()
        rec = await a.get_approval(key, "a2")
        assert rec["state"] == "decided" and rec["decision"]["by"] == "terminal"
        with pytest.raises(Exception, match="deny by terminal on hv-a"):
            await b.decide_approval(key, "a2", {"decision": "allow", "by": "bob"})
        # the forwarded allow of a1 lost to the terminal's deny: the record is corrected to what the gate did
        link.report(key, hb([], [ApprovalEnded(id="a1", decision="deny", by="terminal")]))
        await settle()
        rec = await a.get_approval(key, "a1")
        assert rec["decision"]["decision"] == "deny" and rec["overrode"]["by"] == "alice"
        assert len(sent) == 1  # the correction is not forwarded
    finally:
        await link.close()


async def test_a_new_owner_reopens_nothing_and_forwards_a_decision_made_in_the_gap() -> None:
    hub = InProcessHub()
    a = InProcessBackplane(Settings("hv-a", "main"), hub)
    c = InProcessBackplane(Settings("hv-c", "main"), hub)
    hub.backplanes += [a, c]
    key = AgentKey("main", "m", "n1")
    await a.open_approval(key, "a1", {"tool": "bash"})  # the old owner opened it, then died
    await c.decide_approval(key, "a1", {"decision": "deny", "by": "carol"})  # nobody owned n1 then
    sent: list[dict] = []
    link = ApprovalsLink(owner_service(sent), c, "main")  # type: ignore[arg-type]
    await link.start()
    try:
        link.report(key, reg([live("a1")]))  # the bridge registered here
        await settle()
        assert [(e["id"], e["decision"]) for e in sent] == [("a1", "deny")]
        assert (await c.get_approval(key, "a1"))["owner"] == "hv-a"  # not re-opened
    finally:
        await link.close()


def test_a_registration_checks_every_open_approval_again_and_writes_every_reported_outcome() -> None:
    book = OwnerBook()
    book.report("n1", [live("a1")], None)
    assert book.take_forward("n1", "a1", {"state": "decided", "decision": {"decision": "allow", "by": "x"}})
    ended = [ApprovalEnded(id="a0", decision="deny", by="terminal")]  # ended while no hypivisor held the agent
    new, gone = book.report("n1", [live("a1")], ended, fresh=True)
    assert [i.approval_id for i in new] == ["a1"] and [g.approval_id for g in gone] == ["a0"]
    assert book.wants_forward("n1", "a1", {"state": "decided", "decision": {"decision": "allow", "by": "x"}})


async def test_a_decision_the_bridge_could_not_take_is_forwarded_when_it_registers_again() -> None:
    hub = InProcessHub()
    a = InProcessBackplane(Settings("hv-a", "main"), hub)
    hub.backplanes += [a]
    sent: list[dict] = []
    service = owner_service(sent)
    link = ApprovalsLink(service, a, "main")  # type: ignore[arg-type]
    await link.start()
    key = AgentKey("main", "m", "n1")
    try:
        link.report(key, reg([live("a1")]))
        await settle()
        service.senders.clear()  # the bridge's connection is gone (it reconnects)
        await a.decide_approval(key, "a1", {"decision": "allow", "by": "alice"})
        await settle()
        assert sent == []
        service.senders["conn"] = lambda b: sent.append(orjson.loads(b)) or True
        link.report(key, reg([live("a1")]))  # registered again on a new connection
        await settle()
        assert [(e["id"], e["by"]) for e in sent] == [("a1", "alice")]
        link.report(key, hb([live("a1")]))
        await settle()
        assert len(sent) == 1
    finally:
        await link.close()


async def test_one_process_decides_in_memory_and_refuses_an_older_bridge() -> None:
    from hypivisor.cluster.approvals import decide
    from pi_socket.errors import HypiError

    sent: list[dict] = []
    service = owner_service(sent)
    service.attention = SimpleNamespace(reported=lambda node_id: [live("a1")] if node_id == "n1" else [])
    with pytest.raises(HypiError) as exc:
        await decide(service, params(approval_id="a9"))  # type: ignore[arg-type]
    assert exc.value.code == 1013 and "no open approval 'a9'" in exc.value.message
    with pytest.raises(HypiError) as exc:
        await decide(service, params(node_id="ghost"))  # type: ignore[arg-type]
    assert exc.value.code == 1006
    assert await decide(service, params(by="ann")) == {"status": "accepted", "decision": "allow", "by": "ann"}  # type: ignore[arg-type]
    with pytest.raises(HypiError) as exc:
        await decide(service, params(decision="deny"))  # type: ignore[arg-type]
    assert exc.value.code == 1013 and exc.value.message == "already decided (allow by ann)"
    assert [(e["event"], e["id"], e["decision"]) for e in sent] == [("approval_decision", "a1", "allow")]
    service.registry.nodes["n1"].node = NodeInfo(id="n1", machine="m", cwd="/w", port=4000, capabilities=["approvals"])
    with pytest.raises(HypiError) as exc:  # a bridge that would ignore the event: refused, nothing recorded
        await decide(service, params(approval_id="a1"))  # type: ignore[arg-type]
    assert exc.value.code == 1014


async def test_a_decision_for_an_approval_the_card_shows_waits_a_moment_for_its_record() -> None:
    """The card's pending approval (the roster) may reach a dashboard a moment before the owner wrote the
    approval's record: a decision then waits for the record (up to RECORD_WAIT_S) instead of failing; with
    nothing pending on the card an unknown approval fails at once."""
    import time

    hub = InProcessHub()
    a = InProcessBackplane(Settings("hv-a", "main"), hub)
    hub.backplanes.append(a)
    service = owner_service([])
    link = ApprovalsLink(service, a, "main")  # type: ignore[arg-type]
    key = AgentKey("main", "m", "n1")
    entry = service.registry.nodes["n1"]
    try:
        entry.node = entry.node.model_copy(update={"pending_approvals": 1})

        async def record_later() -> None:
            await asyncio.sleep(0.3)
            await a.open_approval(key, "a1", pending_fields("n1", live("a1")))

        writer = asyncio.ensure_future(record_later())
        result = await link.decide(params(by="ann"))
        await writer
        assert result["decision"] == "allow" and result["by"] == "ann"
        entry.node = entry.node.model_copy(update={"pending_approvals": 0})
        t0 = time.monotonic()
        with pytest.raises(Exception, match="not yet recorded"):
            await link.decide(params(approval_id="a7"))
        assert time.monotonic() - t0 < 0.5
    finally:
        await link.close()
