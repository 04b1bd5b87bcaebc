"""The backplane contract (hypivisor/cluster/backplane.py, specs/cluster.md), one test per promise, run over both
implementations: in-process (two backplanes on one hub) and NATS (two backplanes on different nodes of a real
3-node JetStream cluster on loopback). Then what only a real cluster can do: SIGKILL of a NATS node.

Every wait is bounded (:func:`until`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hypivisor.cluster.backplane import (
    AgentChange,
    ApprovalConflict,
    ApprovalUnknown,
    Backplane,
    BackplaneError,
    Event,
    InProcessBackplane,
    InProcessHub,
    NoOwner,
    RequestTimeout,
    Settings,
)
from hypivisor.cluster.names import AgentKey, machine_key, site_events
from integration_tests.harness.hypivisor_proc import free_port

SITE = "lab"
_ids = itertools.count(1)


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def retry(op: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "operation") -> Any:
    """Run ``op`` until it succeeds (a cluster electing a new leader refuses for a moment), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await op()
        except (ApprovalConflict, ApprovalUnknown, NoOwner):
            raise
        except Exception as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} kept failing for {timeout} s: {type(e).__name__}: {e}") from e
            await asyncio.sleep(0.2)


Factory = Callable[..., Awaitable[Backplane]]


@pytest.fixture(params=["inprocess", "nats"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """``await make(node=0, ttl_s=…, heartbeat_s=…)``: a started backplane (a hypivisor's), closed at the end."""
    made: list[Backplane] = []
    hub = InProcessHub()
    cluster = request.getfixturevalue("nats_cluster") if request.param == "nats" else None
    run = next(_ids)

    async def factory(
        node: int = 0, ttl_s: float = 30.0, heartbeat_s: float = 10.0, liveness: str = "agent"
    ) -> Backplane:
        hv_id = f"hv{run}-{len(made) + 1}"
        bp: Backplane
        if cluster is None:
            bp = InProcessBackplane(
                Settings(hv_id, SITE, ttl_s=ttl_s, heartbeat_s=heartbeat_s, liveness=liveness),  # type: ignore[arg-type]
                hub,
            )
        else:
            from hypivisor.cluster.nats_backplane import NatsBackplane, NatsSettings

            urls = cluster.urls[node:] + cluster.urls[:node]  # its own node first, the others for fail-over
            # one site per test run: a fresh bucket, so earlier tests' records and TTLs do not leak in
            site = f"{SITE}{run}"
            bp = NatsBackplane(
                NatsSettings(
                    hv_id,
                    site,
                    ttl_s=ttl_s,
                    heartbeat_s=heartbeat_s,
                    liveness=liveness,  # type: ignore[arg-type]
                    servers=tuple(urls),
                    replicas=3,
                )
            )
        await bp.start()
        made.append(bp)
        return bp

    factory.kind = request.param  # type: ignore[attr-defined]
    try:
        yield factory
    finally:
        for bp in made:
            t0 = time.monotonic()
            await asyncio.wait_for(bp.close(), 15)  # close is bounded by design: fail here, not at pytest's 300 s
            assert time.monotonic() - t0 < 12, f"closing {bp.hv_id} took {time.monotonic() - t0:.1f} s"


def key_of(bp: Backplane, machine: str, agent: str) -> AgentKey:
    return AgentKey(bp.settings.site, machine, agent)


async def flush(*bps: Backplane) -> None:
    for bp in bps:
        f = getattr(bp, "flush", None)
        if f is not None:
            await f()


async def test_registrations_are_seen_by_every_hypivisor(make: Factory) -> None:
    a = await make(node=0)
    b = await make(node=1)
    ka, kb = key_of(a, "alpha.example", "n-1"), key_of(a, "beta host", "n/2")
    await a.register_agent(ka, {"id": "n-1", "status": "active"})
    await b.register_agent(kb, {"id": "n/2", "status": "active"})
    for bp in (a, b):
        await until(lambda bp=bp: len(bp.agents()) == 2, what="both agents")
        roster = bp.agents()
        assert roster[ka] == {"id": "n-1", "status": "active", "hv": a.hv_id}
        assert roster[kb]["hv"] == b.hv_id
    # a status change is a new put, seen elsewhere
    await a.register_agent(ka, {"id": "n-1", "status": "working"})
    await until(lambda: b.agents().get(ka, {}).get("status") == "working", what="the status change on b")
    # a late joiner gets the snapshot
    c = await make(node=2)
    assert set(c.agents()) == {ka, kb}
    # a clean removal is a delete, seen as such
    seen: list[AgentChange] = []
    b.on_agent_change(seen.append)
    await a.unregister_agent(ka)
    await until(lambda: any(ch.key == ka and ch.op == "deleted" for ch in seen), what="the delete on b")
    await until(lambda: ka not in c.agents(), what="the delete on c")
    assert ka not in b.agents()


@pytest.mark.parametrize("liveness", ["agent", "lease"])
async def test_a_registration_expires_when_its_owner_stops_heartbeating(make: Factory, liveness: str) -> None:
    a = await make(node=0, ttl_s=2.0, heartbeat_s=0.5, liveness=liveness)
    b = await make(node=1, ttl_s=2.0, heartbeat_s=0.5, liveness=liveness)
    k = key_of(a, "m1", "agent-1")
    seen: list[AgentChange] = []
    b.on_agent_change(seen.append)
    await a.register_agent(k, {"id": "agent-1"})
    await until(lambda: k in b.agents(), what="the registration")
    await asyncio.sleep(3.0)  # longer than the TTL: the heartbeat (or the lease) keeps it
    assert k in b.agents()
    assert not [ch for ch in seen if ch.op != "put"]
    puts = [ch for ch in seen if ch.key == k]
    if liveness == "agent":
        assert len(puts) >= 4  # the record itself is put again every 0.5 s
    else:
        assert len(puts) == 1  # only the lease is refreshed: the record was written once
    t0 = time.monotonic()
    await a.close(deregister=False)  # as a crash: no delete, no more heartbeats
    await until(lambda: any(ch.key == k and ch.op == "expired" for ch in seen), timeout=8.0, what="the expiry")
    assert k not in b.agents()
    assert time.monotonic() - t0 >= 1.0  # not before the TTL (the last beat is at most 0.5 s old)
    # a hypivisor starting now does not see it either: it is gone from the store, not only from b's mirror
    await asyncio.sleep(0.3)
    c = await make(node=2, ttl_s=2.0, heartbeat_s=0.5, liveness=liveness)
    assert k not in c.agents()


async def test_with_leases_a_record_whose_owner_has_no_lease_is_dropped_at_start(make: Factory) -> None:
    """A record can outlive its owner's lease in the store when nobody was watching as the lease ended; the next
    hypivisor to start drops and deletes it."""
    a = await make(node=0, ttl_s=2.0, heartbeat_s=0.5, liveness="lease")
    k = key_of(a, "m1", "orphan")
    await a.register_agent(k, {"id": "orphan"})
    await a.close(deregister=False)
    # the lease expires with nobody watching, and so does its expiry marker (kept as long as the TTL)
    await asyncio.sleep(6.0)
    b = await make(node=1, ttl_s=2.0, heartbeat_s=0.5, liveness="lease")
    assert k not in b.agents()
    await asyncio.sleep(0.3)
    c = await make(node=2, ttl_s=2.0, heartbeat_s=0.5, liveness="lease")
    assert k not in c.agents()  # b deleted it from the store


async def test_a_machine_record_lives_beside_its_agents_and_leaves_with_its_owners_lease(make: Factory) -> None:
    """A machine's record (``<machine>.=``, what ``list_machines`` shows) is a roster record like an agent's: seen
    everywhere, never mistaken for an agent of that machine, and gone with its owner's lease."""
    a = await make(node=0, ttl_s=2.0, heartbeat_s=0.5, liveness="lease")
    b = await make(node=1, ttl_s=2.0, heartbeat_s=0.5, liveness="lease")
    mk, k = machine_key(a.settings.site, "build.example.com"), key_of(a, "build.example.com", "agent-1")
    seen: list[AgentChange] = []
    b.on_agent_change(seen.append)
    await a.register_agent(mk, {"name": "build.example.com", "online": True})
    await a.register_agent(k, {"id": "agent-1"})
    await until(lambda: mk in b.agents() and k in b.agents(), what="the machine and its agent on b")
    assert b.agents()[mk] == {"name": "build.example.com", "online": True, "hv": a.hv_id}
    assert [ch.key.is_machine for ch in seen] == [True, False]
    await a.close(deregister=False)  # as a crash
    await until(lambda: mk not in b.agents() and k not in b.agents(), timeout=8.0, what="both gone with a's lease")
    assert {ch.key for ch in seen if ch.op == "expired"} == {mk, k}


async def test_a_slow_request_does_not_hold_the_next_one(make: Factory) -> None:
    """A machine's spawn waits for its agent; a listing asked meanwhile is answered at once."""
    a = await make(node=0)
    b = await make(node=1)

    async def machine(data: bytes) -> bytes:
        if data == b"slow":
            await asyncio.sleep(2.0)
        return data

    await a.serve_machine(a.settings.site, "beta", machine)
    await flush(a)
    deadline = time.monotonic() + 2
    while True:  # the new interest reaches b's server within milliseconds
        try:
            await b.request_machine(a.settings.site, "beta", b"warm", timeout=3)
            break
        except NoOwner:
            assert time.monotonic() < deadline, "the owner's subscription never reached b's server"
            await asyncio.sleep(0.02)
    slow = asyncio.ensure_future(b.request_machine(a.settings.site, "beta", b"slow", timeout=5))
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    assert await b.request_machine(a.settings.site, "beta", b"fast", timeout=5) == b"fast"
    assert time.monotonic() - t0 < 1.0, "the fast request waited for the slow one"
    assert await slow == b"slow"


async def test_an_agent_that_moves_to_another_hypivisor_belongs_to_it(make: Factory) -> None:
    a = await make(node=0, ttl_s=3.0, heartbeat_s=0.3)
    b = await make(node=1, ttl_s=3.0, heartbeat_s=0.3)
    k = key_of(a, "m1", "mover")
    await a.register_agent(k, {"id": "mover", "v": 1})
    await until(lambda: b.agents().get(k, {}).get("hv") == a.hv_id, what="a's record on b")
    await b.register_agent(k, {"id": "mover", "v": 2})  # its bridge reconnected to b
    await until(lambda: k not in a.owned(), what="a letting go of the agent")
    await asyncio.sleep(1.0)  # a few of a's heartbeat periods: a writes it no more
    assert a.agents()[k] == b.agents()[k] == {"id": "mover", "v": 2, "hv": b.hv_id}
    await a.close()  # a clean stop deletes only what a still owns
    await asyncio.sleep(0.3)
    assert b.agents().get(k, {}).get("hv") == b.hv_id


async def test_a_late_offline_write_or_delete_from_the_old_owner_does_not_take_the_agent_away(make: Factory) -> None:
    a = await make(node=0, ttl_s=3.0, heartbeat_s=0.3, liveness="lease")
    b = await make(node=1, ttl_s=3.0, heartbeat_s=0.3, liveness="lease")
    k = key_of(a, "m1", "mover")
    await a.register_agent(k, {"id": "mover", "status": "active"})
    await until(lambda: b.agents().get(k, {}).get("hv") == a.hv_id, what="a's record on b")
    await b.register_agent(k, {"id": "mover", "status": "active"})  # its bridge reconnected to b
    await until(lambda: k not in a.owned(), what="a letting go of the agent")
    live = {"id": "mover", "status": "active", "hv": b.hv_id}
    seen: list[AgentChange] = []
    b.on_agent_change(seen.append)
    # a notices its old connection's end only now: it writes the agent offline, later it removes it
    await a.register_agent(k, {"id": "mover", "status": "offline"})
    await until(lambda: any(ch.record and ch.record.get("status") == "offline" for ch in seen), what="b seeing it")
    await until(
        lambda: a.agents().get(k) == b.agents().get(k) == live and k not in a.owned(),
        what="b putting the live record back, a letting go again",
    )
    assert k in b.owned()
    await a.unregister_agent(k)
    await until(lambda: any(ch.op == "deleted" for ch in seen), what="b seeing the delete")
    await until(lambda: a.agents().get(k) == b.agents().get(k) == live, what="b putting it back after the delete")
    assert k in b.owned()


async def test_events_reach_every_interested_hypivisor_once(make: Factory) -> None:
    a = await make(node=0)
    b = await make(node=1)
    watched, other = key_of(a, "m1", "watched"), key_of(a, "m1", "other")
    everything: list[Event] = []
    one_agent: list[Event] = []

    async def on_all(e: Event) -> None:
        everything.append(e)

    async def on_one(e: Event) -> None:
        one_agent.append(e)

    await b.subscribe_events(site_events(b.settings.site), on_all)
    unsub = await b.subscribe_events(watched.events_of_agent, on_one)
    await flush(a, b)

    async def interest_arrived() -> bool:  # b's subscriptions reach a's server within milliseconds
        await a.publish_event(watched, "probe", b"")
        await flush(a)
        await asyncio.sleep(0.05)
        return bool(everything and one_agent)

    deadline = time.monotonic() + 3
    while not await interest_arrived():
        assert time.monotonic() < deadline, "b's subscriptions never reached a's server"
    await asyncio.sleep(0.1)
    everything.clear()
    one_agent.clear()
    await a.publish_event(watched, "delta", b'{"t":"x"}')
    await a.publish_event(other, "status", b'{"s":"idle"}')
    await flush(a)
    await until(lambda: len(everything) == 2, what="both events")
    await until(lambda: len(one_agent) == 1, what="the watched agent's event")
    assert one_agent[0] == Event(watched.event_subject("delta"), b'{"t":"x"}')
    await unsub()  # the dashboard closed the agent: no more interest
    await flush(b)
    await a.publish_event(watched, "delta", b"{}")
    await flush(a)
    await until(lambda: len(everything) == 3, what="the third event")
    await asyncio.sleep(0.2)
    assert len(one_agent) == 1


async def test_the_first_decision_on_an_approval_wins_cluster_wide(make: Factory) -> None:
    a = await make(node=0)
    b = await make(node=1)
    k = key_of(a, "m1", "agent-1")
    for i in range(10):
        approval = f"a{i}-x"
        await a.open_approval(k, approval, {"tool": "bash", "summary": "rm -rf build"})
        results = await asyncio.gather(
            a.decide_approval(k, approval, {"decision": "allow", "by": "dash-a"}),
            b.decide_approval(k, approval, {"decision": "deny", "by": "dash-b"}),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, ApprovalConflict)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].winner["decision"] == won[0]["decision"]
        assert "already decided" in str(lost[0])
        stored = await a.get_approval(k, approval)
        assert stored == won[0] and stored["state"] == "decided"
        with pytest.raises(ApprovalConflict):
            await b.decide_approval(k, approval, {"decision": "allow", "by": "late"})
    with pytest.raises(ApprovalUnknown):
        await b.decide_approval(k, "never-opened", {"decision": "allow", "by": "x"})


async def test_each_attention_item_is_handled_by_exactly_one_hypivisor(make: Factory) -> None:
    a = await make(node=0)
    b = await make(node=1)
    handled: list[tuple[str, str]] = []

    def handler_of(bp: Backplane) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def handle(item: dict[str, Any]) -> None:
            handled.append((bp.hv_id, item["id"]))
            await asyncio.sleep(0.005)  # sending a push takes a moment

        return handle

    await a.consume_attention(handler_of(a))
    await b.consume_attention(handler_of(b))
    k = key_of(a, "m1", "agent-1")
    n = 60
    for i in range(n):
        await (a if i % 2 else b).publish_attention(k, "added", {"id": f"item-{i}", "kind": "approval"})
    await until(lambda: len(handled) >= n, timeout=15, what="every item handled")
    await asyncio.sleep(0.5)  # nothing arrives twice later either
    ids = [item for _, item in handled]
    assert sorted(ids) == sorted(f"item-{i}" for i in range(n)), "each item exactly once"
    assert {hv for hv, _ in handled} <= {a.hv_id, b.hv_id}


async def test_an_attention_item_of_a_quiet_moment_is_handled_at_once(make: Factory) -> None:
    """A push goes out as soon as its item is published, however long the pull request waiting for it lingers
    (``ATTN_FETCH_S``): items published one at a time, with pauses between them, are each handled at once."""
    a = await make(node=0)
    b = await make(node=1)
    handled: dict[str, float] = {}

    async def handle(item: dict[str, Any]) -> None:
        handled[item["id"]] = time.monotonic()

    await a.consume_attention(handle)
    await flush(a)
    await asyncio.sleep(0.3)  # a's pull request is waiting
    k = key_of(a, "m1", "agent-1")
    delays = []
    for i in range(4):
        t0 = time.monotonic()
        await b.publish_attention(k, "added", {"id": f"quiet-{i}", "kind": "approval"})
        await until(lambda i=i: f"quiet-{i}" in handled, timeout=10, what=f"item {i} handled")
        delays.append(handled[f"quiet-{i}"] - t0)
        await asyncio.sleep(0.35)
    assert max(delays) < 0.3, [f"{d:.3f}" for d in delays]


async def test_the_inbox_is_replayed_in_order_without_taking_from_the_push_queue(make: Factory) -> None:
    a = await make(node=0)
    k = key_of(a, "m1", "agent-1")
    assert await a.attention_log() == []
    for i in range(5):
        await a.publish_attention(k, "added" if i % 2 == 0 else "resolved", {"id": f"item-{i}"})
    b = await make(node=1)  # a hypivisor started later (or restarted) rebuilds the inbox from the log
    log_b = await b.attention_log()
    assert [x["id"] for x in log_b] == [f"item-{i}" for i in range(5)]
    assert log_b[1]["_subject"] == k.attention_subject("resolved")
    assert [x["id"] for x in await b.attention_log(limit=2)] == ["item-3", "item-4"]
    handled: list[str] = []

    async def handle(item: dict[str, Any]) -> None:
        handled.append(item["id"])

    await b.consume_attention(handle)  # the push queue still has every item: replaying took none
    await until(lambda: len(handled) == 5, what="every item pushed")
    assert len(await a.attention_log()) == 5


async def test_requests_reach_the_owner_and_fail_at_once_without_one(make: Factory) -> None:
    a = await make(node=0)
    b = await make(node=1)
    k = key_of(a, "m1", "agent-1")

    async def answer(data: bytes) -> bytes:
        return b"from " + a.hv_id.encode() + b": " + data

    unserve = await a.serve_agent(k, answer)
    await a.register_agent(k, {"id": "agent-1"})  # a request goes to the hypivisor the roster names
    await until(lambda: k in b.agents(), what="the agent in b's roster")
    await flush(a)
    # the new interest reaches the other servers within milliseconds (an owner serves before it registers the
    # agent, so callers that found the agent in the roster do not see this window)
    deadline = time.monotonic() + 2
    while True:
        try:
            got = await b.request_agent(k, b"abort", timeout=3)
            break
        except NoOwner:
            assert time.monotonic() < deadline, "the owner's subscription never reached b's server"
            await asyncio.sleep(0.02)
    assert got == f"from {a.hv_id}: abort".encode()
    t0 = time.monotonic()
    with pytest.raises(NoOwner):
        await b.request_agent(key_of(a, "m1", "nobody"), b"abort", timeout=3)
    assert time.monotonic() - t0 < 1.0, "no responders is immediate, not a timeout"

    # a machine's requests go to the hypivisor its service is connected to; a failing handler answers an error
    async def machine(data: bytes) -> bytes:
        if data == b"boom":
            raise RuntimeError("cannot list that")
        return b"dirs of beta"

    await a.serve_machine(a.settings.site, "beta", machine)
    await flush(a)
    deadline = time.monotonic() + 2
    while True:
        try:
            got = await b.request_machine(a.settings.site, "beta", b"list", timeout=3)
            break
        except NoOwner:
            assert time.monotonic() < deadline, "the machine's subscription never reached b's server"
            await asyncio.sleep(0.02)
    assert got == b"dirs of beta"
    assert (
        await b.request_machine(a.settings.site, "beta", b"boom", timeout=3)
        == b'{"error":"RuntimeError: cannot list that"}'
    )
    with pytest.raises(NoOwner, match="no hypivisor serves machine gamma"):
        await b.request_machine(a.settings.site, "gamma", b"list", timeout=3)

    await unserve()
    await flush(a)

    async def no_owner() -> bool:
        # a server that has not yet heard that the interest is gone forwards the request: a timeout, not NoOwner
        try:
            await b.request_agent(k, b"abort", timeout=0.5)
        except NoOwner:
            return True
        except RequestTimeout:
            return False
        raise AssertionError("an unserved agent answered")

    deadline = time.monotonic() + 5
    while not await no_owner():
        assert time.monotonic() < deadline, "still routed 5 s after the owner stopped serving"


async def test_sigkill_of_a_nats_node_keeps_both_hypivisors_working(
    make: Factory, request: pytest.FixtureRequest
) -> None:
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("only a real cluster has nodes to kill")
    cluster = request.getfixturevalue("nats_cluster")
    a = await make(node=0, ttl_s=30.0, heartbeat_s=10.0)
    b = await make(node=1, ttl_s=30.0, heartbeat_s=10.0)
    k1 = key_of(a, "m1", "before")
    await a.register_agent(k1, {"id": "before"})
    await a.open_approval(k1, "ap-1", {"tool": "bash"})
    await until(lambda: k1 in b.agents(), what="the first registration")
    events: list[Event] = []

    async def on_event(e: Event) -> None:
        events.append(e)

    await b.subscribe_events(site_events(b.settings.site), on_event)

    async def served(data: bytes) -> bytes:
        return b"ok:" + data

    await a.serve_agent(k1, served)
    await flush(a, b)
    cluster.kill(0)  # a's own server (and maybe the leader of some streams)
    try:
        t0 = time.monotonic()

        async def event_roundtrip() -> None:
            n = len(events)
            await a.publish_event(k1, "status", b"{}")
            await until(lambda: len(events) > n, timeout=0.5, what="an event")

        # core NATS (events, routing) only waits for a's reconnection to another server
        await retry(event_roundtrip, timeout=3, what="an event from a to b after the kill")
        assert await retry(lambda: b.request_agent(k1, b"ping", timeout=1), timeout=3, what="a request") == b"ok:ping"
        core_s = time.monotonic() - t0
        # JetStream writes wait for a new stream leader when the killed node led the stream (Raft: seconds)
        k2 = key_of(a, "m1", "after")
        await a.register_agent(k2, {"id": "after"})  # False while no leader: then stored in the background
        await until(lambda: k2 in b.agents(), timeout=15, what="the registration made after the kill, on b")
        decided = await retry(
            lambda: b.decide_approval(k1, "ap-1", {"decision": "allow", "by": "b"}), what="a decision"
        )
        assert decided["state"] == "decided"
        with pytest.raises(ApprovalConflict):
            await a.decide_approval(k1, "ap-1", {"decision": "deny", "by": "a"})
        assert core_s < 2.0, f"events and requests were down {core_s:.1f} s"
    finally:
        cluster.restart(0)
    assert set(b.agents()) >= {k1, k2}


async def stream_leader_lost(a: Backplane) -> None:
    """Wait until the roster bucket's stream has no leader (two of three NATS nodes were just killed)."""
    from hypivisor.cluster.names import AGENTS_BUCKET

    stream = f"KV_{AGENTS_BUCKET.format(site=a.settings.site)}"

    async def leaderless() -> bool:
        try:
            info = await a.js.stream_info(stream)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - no leader to answer: what the tests wait for
            return True
        return info.cluster is None or info.cluster.leader is None

    deadline = time.monotonic() + 20
    while not await leaderless():
        assert time.monotonic() < deadline, "the stream kept a leader with two of three nodes down"
        await asyncio.sleep(0.2)


async def test_a_put_the_store_never_took_is_put_again_until_it_is_stored(
    make: Factory, request: pytest.FixtureRequest
) -> None:
    """A record is published without waiting for the stream's ack (pipelined) and counts as stored when the ack
    comes back (lease liveness; the watch's echo with agent liveness): a put made while the stream has no leader
    (two of three NATS nodes down) is lost by the server, and put again until it lands once the cluster is whole."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("only a real cluster loses a put")
    cluster = request.getfixturevalue("nats_cluster")
    # lease liveness: records are not put again on a beat, only when a put is known lost
    a = await make(node=0, ttl_s=60.0, heartbeat_s=20.0, liveness="lease")
    b = await make(node=0, ttl_s=60.0, heartbeat_s=20.0, liveness="lease")
    await flush(a, b)
    cluster.kill(1)
    cluster.kill(2)
    try:
        await stream_leader_lost(a)
        k = key_of(a, "m1", "while-no-leader")
        await a.register_agent(k, {"id": "while-no-leader"})
        await asyncio.sleep(1.0)
        assert k not in b.agents(), "stored without a stream leader?"
    finally:
        cluster.restart(1)
        cluster.restart(2)
    await until(lambda: k in b.agents(), timeout=30, what="the lost put, put again, on b")
    assert b.agents()[k]["id"] == "while-no-leader"


async def test_a_delete_the_store_never_took_is_published_again_until_it_is_stored(
    make: Factory, request: pytest.FixtureRequest
) -> None:
    """An agent that leaves is deleted with a publish the stream acks: a delete made while the stream has no leader
    (two of three NATS nodes down) is lost by the server and published again until it lands, so the agent does not
    stay on every other hypivisor's roster for as long as its old hypivisor's lease lives."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("only a real cluster loses a delete")
    cluster = request.getfixturevalue("nats_cluster")
    a = await make(node=0, ttl_s=60.0, heartbeat_s=20.0, liveness="lease")
    b = await make(node=0, ttl_s=60.0, heartbeat_s=20.0, liveness="lease")
    k = key_of(a, "m1", "leaves-while-no-leader")
    await a.register_agent(k, {"id": "leaves-while-no-leader"})
    await until(lambda: k in b.agents(), timeout=10, what="the agent on b")
    cluster.kill(1)
    cluster.kill(2)
    try:
        await stream_leader_lost(a)
        await a.unregister_agent(k)
        await asyncio.sleep(1.0)
        assert k in b.agents(), "deleted without a stream leader?"
    finally:
        cluster.restart(1)
        cluster.restart(2)
    await until(lambda: k not in b.agents(), timeout=30, what="the lost delete, published again, on b")
    c = await make(node=1, ttl_s=60.0, heartbeat_s=20.0, liveness="lease")  # the store itself: read at start
    assert k not in c.agents()


async def test_a_roster_batch_a_hypivisor_missed_is_caught_up_from_the_bucket(make: Factory) -> None:
    """Lease liveness: an owner publishes what the stream took as numbered batches (specs/cluster.md §3). One lost
    on the way (dropped here before b applies it) shows as a gap at the owner's next heartbeat batch (within
    ``FEED_BEAT_S``), and b reads the bucket again: the change is there, with nothing else happening."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("the batched feed is the NATS backplane's")
    import orjson

    from hypivisor.cluster.nats_backplane import FEED_BEAT_S

    a = await make(node=0, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    b = await make(node=1, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    k1, k2 = key_of(a, "m1", "first"), key_of(a, "m1", "second")
    await a.register_agent(k1, {"id": "first", "status": "active"})
    await until(lambda: k1 in b.agents(), timeout=5, what="the first agent on b")
    apply_batch = b._apply_batch  # type: ignore[attr-defined]
    dropped: list[int] = []

    def lossy(msg: Any) -> None:
        batch = orjson.loads(msg.data)
        if batch["e"] and not dropped:
            dropped.append(batch["n"])
            return
        apply_batch(msg)

    b._apply_batch = lossy  # type: ignore[attr-defined]
    await a.register_agent(k2, {"id": "second", "status": "active"})
    await until(lambda: dropped, timeout=5, what="a's batch with the second agent, dropped on b")
    assert k2 not in b.agents()
    t0 = time.monotonic()
    await until(lambda: k2 in b.agents(), timeout=3 * FEED_BEAT_S + 5, what="the missed change, read again")
    assert b.agents()[k2]["id"] == "second" and k1 in b.agents()
    print(f"\nmissed batch {dropped[0]} caught up {time.monotonic() - t0:.2f} s later (heartbeat {FEED_BEAT_S} s)")


async def test_an_agent_registered_again_right_after_its_delete_is_shown_at_once(make: Factory) -> None:
    """Lease liveness: an agent that deregisters and registers again under the same id (a restart) is a new
    record, so its put goes out at once, not after the ``GATHER_S`` that a new session name waits, even while the
    delete is not acked yet and this hypivisor's roster still shows the old record (specs/cluster.md §3)."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("the gathered puts are the NATS backplane's")
    from hypivisor.cluster.nats_backplane import GATHER_S

    a = await make(node=0, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    b = await make(node=1, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    k = key_of(a, "m1", "again")
    record = {"id": "again", "status": "active", "session_name": "one"}
    await a.register_agent(k, record)
    await until(lambda: k in b.agents(), timeout=5, what="the agent on b")
    await a.unregister_agent(k)  # its delete is published; no ack can have come back before the next line
    assert k in a.agents(), "the delete's ack was applied already: the case is not tested"
    t0 = time.monotonic()
    await a.register_agent(k, {**record, "session_name": "two"})
    assert k not in a._later, "the new record waits to be gathered"  # type: ignore[attr-defined]
    await until(lambda: (b.agents().get(k) or {}).get("session_name") == "two", timeout=5, what="the new record on b")
    print(f"\nregistered again -> on b after {1000 * (time.monotonic() - t0):.0f} ms (gathering: {GATHER_S} s)")


async def test_changes_to_show_at_once_made_a_moment_apart_go_out_in_one_batch(make: Factory, monkeypatch) -> None:
    """Lease liveness: a delete and a join a moment apart (a deregister, then the register after it) wait
    ``SOON_S`` for each other and reach another hypivisor in one batch (specs/cluster.md §3); each is still there
    as soon as that batch is. The window is widened here so a loaded machine cannot split it."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("the gathered puts are the NATS backplane's")
    from hypivisor.cluster import feed

    monkeypatch.setattr(feed, "SOON_S", 0.3)  # feed.soon_delay reads it at each wait
    a = await make(node=0, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    b = await make(node=1, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    old, new = key_of(a, "m1", "old"), key_of(a, "m1", "new")
    await a.register_agent(old, {"id": "old", "status": "active"})
    await until(lambda: old in b.agents(), timeout=5, what="the old agent on b")
    batches: list[list] = []
    apply_batch = b._apply_batch  # type: ignore[attr-defined]

    def counted(msg: Any) -> None:
        import orjson

        entries = orjson.loads(msg.data)["e"]
        if entries:
            batches.append([entry[0] for entry in entries])
        apply_batch(msg)

    b._apply_batch = counted  # type: ignore[attr-defined]
    await a.unregister_agent(old)
    await asyncio.sleep(0.05)  # the register arrives a moment later
    await a.register_agent(new, {"id": "new", "status": "active"})
    await until(lambda: new in b.agents() and old not in b.agents(), timeout=5, what="the delete and the join on b")
    assert batches == [[old.kv_key, new.kv_key]], batches


async def test_an_owner_never_gets_its_own_roster_batches_back(make: Factory) -> None:
    """Lease liveness: an owner's batches go to the other hypivisors only. The server sends none back to it (the
    feed's connection has no echo): each would be a wake-up for nothing, one per tick and one per join. The other
    hypivisor gets every one."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("the batched feed is the NATS backplane's")
    a = await make(node=0, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    b = await make(node=1, ttl_s=30.0, heartbeat_s=10.0, liveness="lease")
    heard: dict[str, list[str]] = {"a": [], "b": []}
    for name, bp in (("a", a), ("b", b)):
        on_batch = bp._on_batch  # type: ignore[attr-defined]

        def seen(msg: Any, name: str = name, on_batch: Any = on_batch) -> None:
            heard[name].append(msg.subject.rsplit(".", 1)[1])
            on_batch(msg)

        sub = next(s for s in bp.feed_nc._subs.values() if s._pending_queue._handler == on_batch)  # type: ignore[attr-defined]
        sub._pending_queue._handler = seen
    keys = [key_of(a, "m1", f"agent{i}") for i in range(5)]
    for i, k in enumerate(keys):
        await a.register_agent(k, {"id": k.agent, "status": "active"})
        await asyncio.sleep(0.02 * (i % 2))
    await until(lambda: all(k in b.agents() for k in keys), timeout=5, what="a's agents on b")
    await flush(a, b)
    await asyncio.sleep(0.3)  # an echo would be on its way by now
    assert heard["b"] and set(heard["b"]) == {a.hv_id}, heard
    assert a.hv_id not in heard["a"], f"a got {heard['a'].count(a.hv_id)} of its own batches back"


async def test_agents_served_share_one_subscription_and_leave_nothing_behind(make: Factory) -> None:
    """Agents come and go all day, and a fleet fails over to one hypivisor at once: serving an agent costs no
    subscription of its own (one per hypivisor), and an agent let go leaves no handler behind (NATS)."""
    if make.kind != "nats":  # type: ignore[attr-defined]
        pytest.skip("the NATS client's subscriptions")
    a = await make()
    before = len(a.nc._subs)  # type: ignore[attr-defined]

    async def served(data: bytes) -> bytes:
        return data

    stops = [await a.serve_agent(key_of(a, "m1", f"churn-{i}"), served) for i in range(50)]
    assert len(a.nc._subs) <= before + 1  # type: ignore[attr-defined]
    for stop in stops:
        await stop()
    assert len(a.nc._subs) <= before + 1 and not a._agent_handlers  # type: ignore[attr-defined]


async def test_no_nats_server_is_a_clear_error_within_the_start_timeout() -> None:
    from hypivisor.cluster.nats_backplane import NatsBackplane, NatsSettings

    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    bp = NatsBackplane(NatsSettings("hv-x", SITE, servers=(url,), start_timeout_s=1.5))
    t0 = time.monotonic()
    with pytest.raises(BackplaneError, match=f"no NATS server of {url} answered within 1.5 s.*ConnectionRefused"):
        await bp.start()
    assert time.monotonic() - t0 < 4
    await asyncio.wait_for(bp.close(), 5)
