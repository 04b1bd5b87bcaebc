"""The other hypivisors' machines (hypivisor/cluster/machine_mirror.py): records → the merged list and the machine
events of this hypivisor's dashboards; a live connection here wins; names keep their secret across hypivisors;
every machine's agent count is the whole roster's (the book counts the other hypivisors' agents too, and a record
is shown with that count). And the key of a machine's record (hypivisor/cluster/names.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hypivisor.cluster.machine_mirror import RemoteMachines, machine_record, secret_digest, strong
from hypivisor.cluster.names import AgentKey, machine_key
from hypivisor.machines import MachineBook
from pi_socket.protocol import MachineFacts, MachineInfo, NodeInfo, NodeJoinedEvent, NodeOfflineEvent, NodeRemovedEvent


def info(name: str = "alpha", online: bool = True, **kw: Any) -> MachineInfo:
    return MachineInfo(name=name, online=online, agents=kw.pop("agents", 0), service=kw.pop("service", True), **kw)


def rec(name: str = "alpha", hv: str = "hv-a", secret: str = "s3cret", **kw: Any) -> dict:
    return {**machine_record(info(name, **kw), secret_digest(secret) if secret else ""), "hv": hv}


def kinds(events: list) -> list[str]:
    return [e.event for e in events]


def test_a_machine_record_has_its_own_key_no_agent_id_can_name() -> None:
    k = machine_key("main", "build.example.com")
    assert k.kv_key == "build=2Eexample=2Ecom.=" and k.is_machine
    assert AgentKey.from_kv_key("main", k.kv_key) == k
    assert not AgentKey.from_kv_key("main", AgentKey("main", "m", "=").kv_key).is_machine  # an agent named "="
    assert AgentKey("main", "m", "=").kv_key == "m.=3D"
    assert k.event_subject("index_progress") == "hp.evt.main.build=2Eexample=2Ecom.=.index_progress"
    with pytest.raises(ValueError):
        AgentKey.from_kv_key("main", "m.")


def test_a_remote_machine_joins_updates_goes_offline_and_leaves() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    events, reassert = m.apply("put", "alpha", rec(), None)
    assert kinds(events) == ["machine_joined"] and not reassert
    shown: Any = events[0].machine  # type: ignore[attr-defined]
    assert shown.hv == "hv-a" and not shown.own and shown.online and "secret_sha256" not in shown.model_dump()
    assert m.apply("put", "alpha", rec(), None) == ([], False)  # the same record again: nothing
    # the count is this hypivisor's roster's, never the record's: a record saying 3 agents changes nothing shown
    assert m.apply("put", "alpha", {**rec(), "agents": 3}, None) == ([], False)
    assert m.view("alpha", None).agents == 0  # type: ignore[union-attr]
    assert kinds(m.apply("put", "alpha", rec(os="Linux"), None)[0]) == ["machine_updated"]  # its facts do
    left = m.apply("put", "alpha", rec(online=False), None)[0]
    assert kinds(left) == ["machine_left"] and left[0].machine.online is False  # type: ignore[attr-defined]
    gone = m.apply("expired", "alpha", None, None)[0]
    assert kinds(gone) == ["machine_left"] and gone[0].machine is None and len(m) == 0  # type: ignore[attr-defined]
    assert m.apply("deleted", "alpha", None, None) == ([], False)


def test_own_records_and_records_of_the_own_machine_are_ignored() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    assert m.apply("put", "alpha", rec(hv="hv-b"), None) == ([], False)
    assert m.apply("put", "hub-b", rec("hub-b"), None) == ([], False)
    assert m.apply("put", "alpha", rec(hv=""), None) == ([], False) and len(m) == 0


def test_a_bad_record_is_counted_never_shown() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    assert m.apply("put", "alpha", {"hv": "hv-a", "name": "alpha"}, None) == ([], False)  # no online, agents
    assert m.apply("put", "alpha", rec("other"), None) == ([], False)  # not the key's machine
    assert m.refused == 2 and len(m) == 0


def test_a_live_connection_here_wins_and_an_offline_record_from_elsewhere_is_answered() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    here = info("alpha")  # its service is connected here
    events, reassert = m.apply("put", "alpha", rec(), here)
    assert events == [] and not reassert  # two live records do not fight
    events, reassert = m.apply("put", "alpha", rec(online=False), here)
    assert events == [] and reassert  # the old holder's offline record: put the live one again
    assert m.view("alpha", here) is here
    # an offline entry here loses to the record (the machine is elsewhere now), and comes back when it goes
    offline_here = info("alpha", online=False)
    assert getattr(m.view("alpha", offline_here), "hv", None) == "hv-a"
    m.apply("put", "alpha", rec(), offline_here)
    assert getattr(m.view("alpha", offline_here), "online", False)
    events, _ = m.apply("expired", "alpha", None, offline_here)
    assert kinds(events) == ["machine_left"] and events[0].machine == offline_here  # type: ignore[attr-defined]
    assert strong(info(own=True, service=False)) and not strong(offline_here) and not strong(None)
    m.apply("put", "alpha", rec(), here)
    assert m.apply("deleted", "alpha", None, here) == ([], True)  # its old holder's late delete: put it again


def test_the_merged_list_own_first_then_by_name() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    m.apply("put", "Zeta", rec("Zeta"), None)
    m.apply("put", "alpha", rec("alpha"), None)
    local = [info("hub-b", own=True, service=False), info("beta", online=False), info("alpha", online=False)]
    merged = m.merged(local)
    assert [(x.name, getattr(x, "hv", None)) for x in merged] == [
        ("hub-b", None),
        ("alpha", "hv-a"),
        ("beta", None),
        ("Zeta", "hv-a"),
    ]


def test_a_name_listed_elsewhere_is_registered_here_only_with_its_secret() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    assert m.secret_ok("alpha", None)  # unknown anywhere: the book's own rules
    m.apply("put", "alpha", rec(secret="right"), None)
    assert m.secret_ok("alpha", "right")
    assert not m.secret_ok("alpha", "wrong") and not m.secret_ok("alpha", None)
    m.apply("put", "hub-a", rec("hub-a", secret=""), None)  # a hypivisor's own machine has no secret
    assert m.secret_ok("hub-a", None)


def node(nid: str, machine: str) -> NodeInfo:
    return NodeInfo(id=nid, machine=machine, cwd="/w", port=4000)


def test_a_record_is_shown_with_the_agent_count_of_this_hypivisors_roster() -> None:
    m = RemoteMachines("hv-b", "hub-b")
    m.apply("put", "two", rec("two"), None)
    from_agents = MachineInfo(name="two", online=True, agents=2)  # the book's entry: two agents on the roster
    shown: Any = m.view("two", from_agents)
    assert (shown.hv, shown.service, shown.online, shown.agents) == ("hv-a", True, True, 2)
    assert [x.agents for x in m.merged([from_agents]) if x.name == "two"] == [2]
    assert getattr(m.view("two", None), "agents", None) == 0  # no agent on the roster names it
    m.apply("put", "two", rec("two", online=False), from_agents)  # its service gone: offline, the agents still count
    shown = m.view("two", from_agents)
    assert not shown.online and shown.agents == 2
    here = info("two", agents=3)  # its service connected here: the book's entry as it is
    assert m.view("two", here) is here
    # what a holder puts never carries a count (a count moving writes nothing)
    assert machine_record(info(agents=5), "")["agents"] == 0


def test_the_books_machine_events_are_what_the_records_show_and_agree_with_the_list() -> None:
    book = MachineBook("hub-b")
    m = RemoteMachines("hv-b", "hub-b")
    book.merge, book.view = m.merged, m.view
    m.apply("put", "two", rec("two"), book.info("two"))  # two's service is on hv-a
    out: Any = book.node_events([NodeJoinedEvent(node=node("n1", "two")), NodeJoinedEvent(node=node("n2", "two"))])
    assert kinds(out) == ["machine_updated"]  # listed already (the record): one update, as the record shows it
    assert (out[0].machine.hv, out[0].machine.service, out[0].machine.agents) == ("hv-a", True, 2)
    listed = {x.name: x for x in book.machines()}
    assert listed["two"] == out[0].machine
    # a machine no service holds: listed from its agents, joins and leaves with them
    out = book.node_events([NodeJoinedEvent(node=node("n3", "m-x"))])
    assert kinds(out) == ["machine_joined"] and out[0].machine.agents == 1 and not out[0].machine.service
    assert {x.name: x.agents for x in book.machines()}["m-x"] == 1
    assert kinds(book.node_events([NodeRemovedEvent(id="n3", reason="deregistered")])) == ["machine_left"]
    assert "m-x" not in {x.name for x in book.machines()}
    # the record lapses: two is listed from its agents (no hv), still with both
    events, _ = m.apply("expired", "two", None, book.info("two"))
    shown: Any = events[0]
    assert kinds(events) == ["machine_updated"] and shown.machine.hv is None and shown.machine.agents == 2
    # a record comes back offline, then its agents go: the count follows, the record stays listed
    m.apply("put", "two", rec("two", online=False), book.info("two"))
    out = book.node_events([NodeOfflineEvent(id="n1"), NodeRemovedEvent(id="n2", reason="ttl")])
    assert kinds(out) == ["machine_updated"] and out[0].machine.agents == 0 and out[0].machine.hv == "hv-a"
    assert {x.name: x.agents for x in book.machines()}["two"] == 0


def test_a_service_that_moved_to_another_hypivisor_does_not_leave_when_its_old_connection_closes() -> None:
    book = MachineBook("hub-b")
    m = RemoteMachines("hv-b", "hub-b")
    book.merge, book.view = m.merged, m.view
    book.register("two", MachineFacts(), None, "c1", 1.0, "s" * 32)
    m.apply("put", "two", rec("two"), book.info("two"))  # its service is on hv-a now too (two live records)
    out: Any = book.connection_closed("c1", 2.0)  # the old connection here closes late
    assert kinds(out) == ["machine_updated"] and out[0].machine.online and out[0].machine.hv == "hv-a"


async def test_remote_agents_count_on_every_machine_and_no_record_is_written_for_them(tmp_path: Path) -> None:
    """The glue: the mirror's node events reach the book (counts of the whole roster), machine events go to the
    dashboards as the records show them, and a hypivisor puts records only for the machines it holds; a count
    moving with other hypivisors' agents writes nothing."""
    from hypivisor.cluster.backplane import AgentChange, InProcessBackplane, Settings
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.protocol import RegisterParams

    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"),
                      env={"HOME": str(tmp_path), "PI_SOCKET_MACHINE": "hub-b"})  # fmt: skip
    backplane = InProcessBackplane(Settings("hv-b", "main", liveness="lease"))
    writes: list[str] = []
    put = backplane.register_agent

    async def counted(key: AgentKey, record: dict) -> bool:
        if key.is_machine:  # the machine records this hypivisor puts
            writes.append(key.machine)
        return await put(key, record)

    backplane.register_agent = counted  # type: ignore[method-assign]
    link = ClusterLink(service, backplane, "127.0.0.1", 1)
    service.cluster = link
    await link.start()
    try:
        sent: list[Any] = []
        service.hub.taps.append(sent.extend)  # what this hypivisor's dashboards get
        await asyncio.sleep(0.05)
        assert writes == ["hub-b"]  # its own machine only
        writes.clear()

        def remote(op: str, nid: str, machine: str, rev: int) -> None:
            record = {**node(nid, machine).model_dump(mode="json"), "hv": "hv-a"} if op == "put" else None
            link._on_change(AgentChange(op, AgentKey("main", machine, nid), record, rev))  # type: ignore[arg-type]

        def machines() -> dict[str, int]:
            return {x.name: x.agents for x in service.machines.book.machines()}

        def machine_events() -> list[Any]:
            out = [e for e in sent if e.event.startswith("machine_")]
            sent.clear()
            return out

        # an agent on hv-a names a machine no service holds: listed here too, and joins
        remote("put", "r1", "m-x", 1)
        [joined] = machine_events()
        assert joined.event == "machine_joined" and joined.machine.agents == 1 and machines()["m-x"] == 1
        # one more agent of it, registered here: counted once each
        _, _, events = service.registry.register(
            RegisterParams(id="l1", machine="m-x", cwd="/w", port=4001), "conn", "127.0.0.1", 1.0
        )
        service.publish(events)
        await asyncio.sleep(0.05)  # an own agent's join shows within SOON_S
        [updated] = machine_events()
        assert updated.event == "machine_updated" and updated.machine.agents == 2 and machines()["m-x"] == 2
        # a machine whose service is on hv-a, with an agent here and one on hv-a: the record, counting both
        record = {**machine_record(info("two"), secret_digest("s")), "hv": "hv-a"}
        link._on_change(AgentChange("put", machine_key("main", "two"), record, 2))
        _, _, events = service.registry.register(
            RegisterParams(id="l2", machine="two", cwd="/w", port=4002), "conn", "127.0.0.1", 1.0
        )
        service.publish(events)
        remote("put", "r2", "two", 3)
        shown = machine_events()[-1].machine
        assert (shown.hv, shown.service, shown.agents) == ("hv-a", True, 2) and machines()["two"] == 2
        # a machine held here counts the other hypivisors' agents too, and its record is not written again for it
        service.hub.publish(service.machines.book.register("gamma", MachineFacts(), None, "svc", 1.0, "g" * 32)[2])
        await asyncio.sleep(0.05)
        assert writes == ["gamma"]
        writes.clear()
        remote("put", "r3", "gamma", 4)
        assert machine_events()[-1].machine.agents == 1 and machines()["gamma"] == 1
        # the remote agent leaves: m-x follows, and leaves once its last agent does
        remote("deleted", "r1", "m-x", 5)
        assert [(e.event, e.machine.agents) for e in machine_events()] == [("machine_updated", 1)]
        service.publish(service.registry.deregister("l1", "conn", 2.0))
        assert "m-x" not in machines()  # counted at once, shown within SOON_S
        await asyncio.sleep(0.05)
        assert [e.event for e in machine_events()] == ["machine_left"]
        assert writes == []  # no record for m-x or two (not held here), none for gamma's count
    finally:
        await link.close()


async def test_a_hypivisor_that_starts_counts_the_agents_already_shared(tmp_path: Path) -> None:
    from hypivisor.cluster.backplane import InProcessBackplane, InProcessHub, Settings
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.config import Config
    from hypivisor.service import Service

    hub = InProcessHub()
    other = InProcessBackplane(Settings("hv-a", "main", liveness="lease"), hub)
    await other.start()
    await other.register_agent(AgentKey("main", "m-x", "r1"), node("r1", "m-x").model_dump(mode="json"))
    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"),
                      env={"HOME": str(tmp_path), "PI_SOCKET_MACHINE": "hub-b"})  # fmt: skip
    link = ClusterLink(service, InProcessBackplane(Settings("hv-b", "main", liveness="lease"), hub), "127.0.0.1", 1)
    service.cluster = link
    await link.start()
    try:
        assert {x.name: x.agents for x in service.machines.book.machines()}.get("m-x") == 1
    finally:
        await link.close()
        await other.close()
