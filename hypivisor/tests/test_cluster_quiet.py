"""Own agents' quiet changes held for the cluster's tick (hypivisor/cluster/quiet.py)."""

from __future__ import annotations

import time

import orjson

from hypivisor.cluster.quiet import QuietHold
from pi_socket.protocol import NodeInfo, NodeJoinedEvent, NodeOfflineEvent, NodeRemovedEvent, NodeUpdatedEvent


class Dashboard:
    """A dashboard's outbox as the hub sees it: every frame it is sent, decoded, with the time it was sent."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, dict]] = []
        self.chunks = False  # one frame per event (no /ws?roster=chunks)

    def send_framed(self, framed: bytes) -> bool:
        n = framed[1] & 0x7F
        self.frames.append((time.time(), orjson.loads(framed[2 if n < 126 else 4 if n == 126 else 10 :])))
        return True

    def roster(self) -> list[tuple[str, str]]:
        return [(f["event"], f["node"]["id"] if "node" in f else f["id"]) for _, f in self.frames
                if f["event"].startswith("node_")]  # fmt: skip


def node(node_id: str, session: str = "s") -> NodeInfo:
    return NodeInfo(id=node_id, machine="m", cwd="/p", port=1, status="active", last_seen=0.0, session_name=session)


def updated(node_id: str, session: str) -> NodeUpdatedEvent:
    return NodeUpdatedEvent(node=node(node_id, session))


def test_updates_are_held_until_the_tick_and_only_the_latest_of_a_node_goes_out() -> None:
    q = QuietHold()
    assert q.hold([updated("a", "one"), updated("b", "x")]) == []
    assert q.hold([updated("a", "two")]) == []
    assert len(q) == 2
    out = q.release()
    assert [(e.node.id, e.node.session_name) for e in out] == [("b", "x"), ("a", "two")]  # in the latest's order
    assert q.release() == [] and len(q) == 0


def test_other_events_go_out_at_once_after_the_held_update_of_their_node() -> None:
    q = QuietHold()
    q.hold([updated("a", "renamed"), updated("b", "x")])
    joined = NodeJoinedEvent(node=node("c"))
    offline = NodeOfflineEvent(id="a")
    out = q.hold([joined, offline])
    assert out[0] is joined  # another node: nothing released for it
    assert [type(e).__name__ for e in out[1:]] == ["NodeUpdatedEvent", "NodeOfflineEvent"]
    assert out[1].node.session_name == "renamed"  # the rename is shown before the node goes offline
    assert [e.node.id for e in q.release()] == ["b"]  # b is still held until the tick


def test_a_removal_or_a_join_of_a_held_node_releases_it_first() -> None:
    q = QuietHold()
    q.hold([updated("a", "one")])
    out = q.hold([NodeRemovedEvent(id="a", reason="deregistered"), NodeJoinedEvent(node=node("a", "two"))])
    assert [e.event for e in out] == ["node_updated", "node_removed", "node_joined"]
    assert q.release() == []


def test_an_update_the_caller_does_not_call_quiet_goes_out_at_once_after_the_held_one() -> None:
    q = QuietHold()
    q.hold([updated("a", "one")])
    moved = updated("a", "one")  # e.g. another hypivisor now owns it: shown at once
    out = q.hold([moved], quiet=False)
    assert [e.node.session_name for e in out] == ["one", "one"] and out[1] is moved
    assert q.release() == []


async def test_a_hypivisor_shows_quiet_roster_changes_on_the_clusters_tick_and_the_rest_at_once(tmp_path) -> None:
    """Service + ClusterLink (in-process backplane): a join shows at once; an own agent's rename and another
    hypivisor's rename wait for the next tick (the latest of each); the other hypivisor's agent going offline shows
    its held rename first, then the offline, at once. Without ``--nats`` nothing is held."""
    import asyncio
    import time

    from hypivisor.cluster.backplane import AgentChange, InProcessBackplane, Settings
    from hypivisor.cluster.feed import GATHER_S
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.cluster.names import AgentKey
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.protocol import HeartbeatParams, RegisterParams

    def make(cluster: bool) -> tuple[Service, Dashboard]:
        service = Service(
            Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)}
        )
        if cluster:
            service.cluster = ClusterLink(
                service, InProcessBackplane(Settings("hv-b", "main", liveness="lease")), "127.0.0.1", 1
            )
        dash = Dashboard()
        service.hub.dashboards.add(dash)  # type: ignore[arg-type]
        return service, dash

    service, dash = make(cluster=True)
    link = service.cluster
    service.publish(service.registry.register(RegisterParams(id="own", machine="m", cwd="/w", port=4000), "c",
                                              "127.0.0.1", 1.0)[2])  # fmt: skip
    other = {"id": "far", "machine": "m2", "cwd": "/x", "port": 1, "status": "active", "last_seen": 1.0, "hv": "hv-a"}
    key = AgentKey("main", "m2", "far")
    link._on_change(AgentChange("put", key, other, 1))
    assert dash.roster() == [("node_joined", "own"), ("node_joined", "far")]  # in order, at once
    dash.frames.clear()
    t0 = time.time()
    tick = t0 - t0 % GATHER_S + GATHER_S
    for name in ("one", "two"):
        service.publish(service.registry.heartbeat(HeartbeatParams(id="own", session_name=name), "c", 2.0))
        link._on_change(AgentChange("put", key, {**other, "session_name": f"far-{name}"}, 2 if name == "one" else 3))
    assert dash.frames == [] and len(link.quiet) == 2  # held
    await asyncio.sleep(tick - time.time() + 0.2)
    assert dash.roster() == [("node_updated", "own"), ("node_updated", "far")]
    assert [f["node"]["session_name"] for _, f in dash.frames] == ["two", "far-two"]  # the latest of each
    assert all(at >= tick - 0.002 for at, _ in dash.frames), (tick, [at for at, _ in dash.frames])  # not before
    dash.frames.clear()
    link._on_change(AgentChange("put", key, {**other, "session_name": "far-three"}, 4))
    link._on_change(AgentChange("put", key, {**other, "session_name": "far-three", "status": "offline"}, 5))
    assert dash.roster() == [("node_updated", "far"), ("node_offline", "far")]  # in order, at once
    await link.close()

    single, dash = make(cluster=False)
    single.publish(single.registry.register(RegisterParams(id="own", machine="m", cwd="/w", port=4000), "c",
                                            "127.0.0.1", 1.0)[2])  # fmt: skip
    single.publish(single.registry.heartbeat(HeartbeatParams(id="own", session_name="now"), "c", 2.0))
    assert dash.roster() == [("node_joined", "own"), ("node_updated", "own")]  # one process: nothing held


async def test_own_joins_and_removals_of_one_moment_reach_the_dashboards_together_and_in_order(tmp_path) -> None:
    """Cluster mode: an own agent's deregister and another's register a moment later (within SOON_S) are one
    publish to the dashboards (one write each), in order; a received event shows at once, after them."""
    import asyncio

    from hypivisor.cluster.backplane import AgentChange, InProcessBackplane, Settings
    from hypivisor.cluster.feed import SOON_S
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.cluster.names import AgentKey
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.protocol import RegisterParams

    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})
    link = ClusterLink(service, InProcessBackplane(Settings("hv-b", "main", liveness="lease")), "127.0.0.1", 1)
    service.cluster = link
    dash = Dashboard()
    service.hub.dashboards.add(dash)  # type: ignore[arg-type]
    calls: list[list[str]] = []  # each fan-out that carries roster events (one write per dashboard)
    fan_out = service.hub.fan_out
    heard: list[str] = []
    service.hub.taps.append(lambda events: heard.extend(e.event for e in events if e.event.startswith("node_")))

    def counted(events: list) -> None:
        fan_out(events)  # a held fan-out it sends first is counted first
        if roster := [e.event for e in events if e.event.startswith("node_")]:
            calls.append(roster)

    service.hub.fan_out = counted  # type: ignore[method-assign]

    def register(node_id: str, port: int) -> None:
        params = RegisterParams(id=node_id, machine="m", cwd="/w", port=port)
        service.publish(service.registry.register(params, "c", "127.0.0.1", 1.0)[2])

    register("old", 4000)
    await asyncio.sleep(SOON_S + 0.05)
    calls.clear()
    service.publish(service.registry.deregister("old", "c", 2.0))
    await asyncio.sleep(SOON_S / 5)
    register("new", 4001)
    assert calls == [] and heard[-2:] == ["node_removed", "node_joined"]  # the taps hear them at once; shown later
    await asyncio.sleep(SOON_S + 0.05)
    assert calls == [["node_removed", "node_joined"]]  # one fan-out, in order
    calls.clear()
    service.publish(service.registry.deregister("new", "c", 3.0))
    other = {"id": "far", "machine": "m2", "cwd": "/x", "port": 1, "status": "active", "last_seen": 1.0, "hv": "hv-a"}
    link._on_change(AgentChange("put", AgentKey("main", "m2", "far"), other, 1))
    assert calls == [["node_removed"], ["node_joined"]]  # the held removal first, then the received join, at once
    assert dash.roster()[-2:] == [("node_removed", "new"), ("node_joined", "far")]
    await link.close()


async def test_another_owners_batch_is_shown_in_one_pass_in_order(tmp_path) -> None:
    """The changes of one feed batch (``Backplane._changes_together``) reach the hub together: consecutive joins are
    one fan-out (one write per dashboard, one pass of the taps), a quiet rename in the middle is held for the tick, and
    the order of what is shown at once is the batch's; outside a batch each change shows on its own."""
    import asyncio

    from hypivisor.cluster.backplane import AgentChange, InProcessBackplane, Settings
    from hypivisor.cluster.feed import GATHER_S
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.cluster.names import AgentKey
    from hypivisor.config import Config
    from hypivisor.service import Service

    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})
    backplane = InProcessBackplane(Settings("hv-b", "main", liveness="lease"))
    link = ClusterLink(service, backplane, "127.0.0.1", 1)
    backplane.on_batch(link._on_batch)  # as ClusterLink.start does
    service.cluster = link
    dash = Dashboard()
    service.hub.dashboards.add(dash)  # type: ignore[arg-type]
    calls: list[list[str]] = []
    fan_out = service.hub.fan_out

    def counted(events: list) -> None:
        fan_out(events)
        if roster := [f"{e.event}:{getattr(e, 'id', None) or e.node.id}" for e in events
                      if e.event.startswith("node_")]:  # fmt: skip
            calls.append(roster)

    service.hub.fan_out = counted  # type: ignore[method-assign]

    def record(node_id: str, **kw) -> dict:
        return {"id": node_id, "machine": "m2", "cwd": "/x", "port": 1, "status": "active", "last_seen": 1.0,
                "hv": "hv-a", **kw}  # fmt: skip

    def change(node_id: str, seq: int, **kw) -> AgentChange:
        return AgentChange("put", AgentKey("main", "m2", node_id), record(node_id, **kw), seq)

    link._on_change(change("a", 1))
    assert calls == [["node_joined:a"]]
    calls.clear()
    with backplane._changes_together():
        link._on_change(change("b", 2))
        link._on_change(change("c", 3))
        link._on_change(change("a", 4, session_name="renamed"))  # quiet: held for the tick
        link._on_change(change("b", 5, status="offline"))
        link._on_change(change("d", 6))
        assert calls == []  # nothing shown before the batch ends
    assert calls == [["node_joined:b", "node_joined:c"], ["node_offline:b", "node_joined:d"]]
    await asyncio.sleep(GATHER_S * 2 + 0.1)
    assert calls[2:] == [["node_updated:a"]] and dash.roster()[-1] == ("node_updated", "a")
    assert link._gathered is None
    await link.close()


async def test_a_fail_overs_joins_reach_a_chunks_dashboard_as_a_few_nodes_joined_frames(tmp_path) -> None:
    """Cluster mode, a fleet failing over: the agents that register here within one ``SOON_S`` and another owner's
    batch of joins each reach a dashboard of ``/ws?roster=chunks`` as one ``nodes_joined`` frame, and a dashboard
    that did not ask as one ``node_joined`` per agent; both end with the same roster. Their machine's agent count
    changes with each agent: the dashboards get its latest ``machine_updated`` of that moment, not one per agent."""
    import asyncio

    from hypivisor.cluster.backplane import AgentChange, InProcessBackplane, Settings
    from hypivisor.cluster.feed import SOON_S
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.cluster.names import AgentKey
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.protocol import RegisterParams

    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})
    backplane = InProcessBackplane(Settings("hv-b", "main", liveness="lease"))
    link = ClusterLink(service, backplane, "127.0.0.1", 1)
    backplane.on_batch(link._on_batch)  # as ClusterLink.start does
    service.cluster = link
    plain, chunked = Dashboard(), Dashboard()
    chunked.chunks = True
    service.hub.dashboards.update((plain, chunked))  # type: ignore[arg-type]
    for i in range(20):  # a fleet re-registering here at once
        params = RegisterParams(id=f"own-{i}", machine="m", cwd="/w", port=4000 + i)
        service.publish(service.registry.register(params, "c", "127.0.0.1", 1.0)[2])
    await asyncio.sleep(SOON_S + 0.05)
    with backplane._changes_together():  # another owner's batch: the rest of the fleet, moved there
        for i in range(15):
            record = {"id": f"far-{i}", "machine": "m2", "cwd": "/x", "port": 1, "status": "active",
                      "last_seen": 1.0, "hv": "hv-a"}  # fmt: skip
            link._on_change(AgentChange("put", AgentKey("main", "m2", f"far-{i}"), record, i + 1))
    # the first agent makes the machine known; the count's updates of one moment are one, the latest
    machine_events = [("machine_joined", "m"), ("machine_updated", "m"), ("machine_joined", "m2")]
    assert [(f["event"], f["machine"]["name"]) for _, f in plain.frames if "machine" in f] == machine_events
    assert next(f for _, f in plain.frames if f["event"] == "machine_updated")["machine"]["agents"] == 20
    assert [f["event"] for _, f in plain.frames if "node" in f] == ["node_joined"] * 35
    assert [(f["event"], len(f["nodes"]) if "nodes" in f else f.get("machine", f.get("node"))["name" if "machine"
             in f else "id"]) for _, f in chunked.frames] == [
        ("node_joined", "own-0"), ("machine_joined", "m"), ("nodes_joined", 19), ("machine_updated", "m"),
        ("nodes_joined", 15), ("machine_joined", "m2"),
    ]  # fmt: skip
    shown = [n["id"] for _, f in chunked.frames for n in (f["nodes"] if "nodes" in f else [f.get("node")]) if n]
    assert shown == [f["node"]["id"] for _, f in plain.frames if "node" in f]  # the same nodes, in the same order
    await link.close()


def test_changes_to_show_at_once_wait_longer_while_a_storm_lasts() -> None:
    from hypivisor.cluster.feed import SOON_S, SOON_STORM_S, STORM_CHANGES, soon_delay

    assert soon_delay(0) == soon_delay(1) == soon_delay(STORM_CHANGES - 1) == SOON_S
    assert soon_delay(STORM_CHANGES) == soon_delay(10 * STORM_CHANGES) == SOON_STORM_S
    assert SOON_STORM_S - SOON_S <= 0.015  # a storm's changes are shown at most 15 ms later


async def test_a_hypivisor_gathers_a_storms_joins_longer_and_goes_back_after_it(tmp_path) -> None:
    """Own joins: the wait after a quiet moment is ``SOON_S``; right after a wait that gathered a storm (a fleet
    re-registering here) it is ``SOON_STORM_S`` for the dashboards and the puts alike; once a wait gathers few, back
    to ``SOON_S``."""
    import asyncio

    from hypivisor.cluster.backplane import InProcessBackplane, Settings
    from hypivisor.cluster.feed import SOON_S, SOON_STORM_S, STORM_CHANGES
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.protocol import RegisterParams

    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})
    link = ClusterLink(service, InProcessBackplane(Settings("hv-b", "main", liveness="lease")), "127.0.0.1", 1)
    service.cluster = link
    loop = asyncio.get_running_loop()
    dash = Dashboard()
    service.hub.dashboards.add(dash)  # type: ignore[arg-type]
    port = iter(range(4000, 5000))

    def register(n: int) -> float:
        """``n`` agents register; how long their events wait (the timer's delay)."""
        for _ in range(n):
            p = next(port)
            params = RegisterParams(id=f"a{p}", machine="m", cwd="/w", port=p)
            service.publish(service.registry.register(params, "c", "127.0.0.1", loop.time())[2])
        assert link._soon_handle is not None
        return link._soon_handle.when() - loop.time()

    async def shown() -> None:
        await asyncio.sleep(SOON_STORM_S + 0.05)
        assert link._soon_handle is None and not link._soon

    assert register(1) <= SOON_S + 0.001
    await shown()
    assert register(STORM_CHANGES) <= SOON_S + 0.001  # the storm's first wait: nothing told it yet
    await shown()
    assert register(1) > SOON_S + 0.005  # right after a storm's wait: longer
    await shown()
    assert register(1) <= SOON_S + 0.001  # that wait gathered one: back to SOON_S
    await shown()
    assert len([f for _, f in dash.frames if f["event"] == "node_joined"]) == STORM_CHANGES + 3
    await link.close()
