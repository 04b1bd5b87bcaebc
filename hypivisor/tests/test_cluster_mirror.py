"""The remote roster (hypivisor/cluster/mirror.py): other hypivisors' records → this hypivisor's roster events.
Also: one process without --nats never imports NATS."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from hypivisor.cluster.mirror import RemoteRoster
from pi_socket.protocol import NodeInfo


def record(node_id: str = "n1", hv: str = "hv-a", **fields: object) -> dict:
    base = NodeInfo(id=node_id, machine="m", cwd="/w", port=4000).model_dump(mode="json")
    return {**base, **fields, "hv": hv}


def names(events: list) -> list[str]:
    return [e.event for e in events]


def test_a_new_agent_joins_marked_with_its_owner_and_an_unchanged_put_is_no_event() -> None:
    m = RemoteRoster("hv-b")
    events = m.apply("put", "m", "n1", record())
    assert names(events) == ["node_joined"] and events[0].node.hv == "hv-a"
    assert m.apply("put", "m", "n1", record(last_seen=123.0)) == []  # only last_seen moved
    assert [n.id for n in m.nodes()] == ["n1"] and m.get("n1").hv == "hv-a"


def test_changes_offline_and_removal() -> None:
    m = RemoteRoster("hv-b")
    m.apply("put", "m", "n1", record())
    updated = m.apply("put", "m", "n1", record(activity="working"))
    assert names(updated) == ["node_updated"] and updated[0].node.activity == "working"
    assert names(m.apply("put", "m", "n1", record(status="offline", offline_since=5.0))) == ["node_offline"]
    assert names(m.apply("put", "m", "n1", record())) == ["node_updated"]  # back online
    removed = m.apply("expired", "m", "n1", None)
    assert names(removed) == ["node_removed"] and removed[0].reason == "ttl"
    assert m.apply("deleted", "m", "n1", None) == [] and len(m) == 0  # already gone: nothing twice


def test_own_records_are_ignored_and_an_agent_moving_here_leaves_silently() -> None:
    m = RemoteRoster("hv-b")
    assert m.apply("put", "m", "n1", record(hv="hv-b")) == []
    m.apply("put", "m", "n1", record())
    assert m.apply("put", "m", "n1", record(hv="hv-b")) == [] and m.get("n1") is None


def test_a_bad_record_is_refused_and_counted_never_shown() -> None:
    m = RemoteRoster("hv-b")
    assert m.apply("put", "m", "n1", {"hv": "hv-a", "id": "n1"}) == []  # no machine, cwd, port
    assert m.apply("put", "m", "n1", record(node_id="other")) == []  # the record is not the key's agent
    assert m.apply("put", "m", "n1", {"id": "n1"}) == []  # no owner: ignored
    assert m.refused == 2 and len(m) == 0


def test_drop_hv_removes_only_that_hypivisors_agents() -> None:
    m = RemoteRoster("hv-b")
    m.apply("put", "m", "n1", record())
    m.apply("put", "m", "n2", record(node_id="n2", hv="hv-c"))
    assert [e.id for e in m.drop_hv("hv-a")] == ["n1"] and [n.id for n in m.nodes()] == ["n2"]


def test_one_process_without_nats_never_imports_it() -> None:
    code = (
        "import sys, hypivisor.__main__, hypivisor.server, hypivisor.service, hypivisor.front\n"
        "from hypivisor import config\n"
        "config.parse([], {})\n"
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith(('nats.', 'hypivisor.cluster'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


async def test_an_agent_held_here_is_never_removed_by_its_old_shared_record_and_shows_again_when_let_go(
    tmp_path,
) -> None:
    """The agent re-registered here while its old record (another hypivisor's) is still shared: that record's lapse
    (lease) or delete must not remove it from this hypivisor's dashboards; once this registry lets the id go, a
    record still held elsewhere is shown."""
    from hypivisor.cluster.backplane import AgentChange, InProcessBackplane, Settings
    from hypivisor.cluster.link import ClusterLink
    from hypivisor.cluster.names import AgentKey
    from hypivisor.config import Config
    from hypivisor.service import Service
    from pi_socket.protocol import RegisterParams

    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})
    link = ClusterLink(service, InProcessBackplane(Settings("hv-b", "main", liveness="lease")), "127.0.0.1", 1)
    service.cluster = link
    sent: list = []
    fan_out = service.hub.fan_out

    def shown(events: list) -> None:  # what this hypivisor's dashboards get, in order
        fan_out(events)  # a held fan-out it sends first is recorded first
        sent.extend(events)

    service.hub.fan_out = shown  # type: ignore[method-assign]
    key = AgentKey("main", "m", "n1")
    link._apply(AgentChange("put", key, record(hv="hv-a"), 1))  # the old owner's record, seen before
    node, _, events = service.registry.register(
        RegisterParams(id="n1", machine="m", cwd="/w", port=4000), "conn", "127.0.0.1", 1.0
    )
    service.publish(events)
    await asyncio.sleep(0.05)  # an own agent's join shows within SOON_S
    sent.clear()
    for op in ("expired", "deleted"):
        link._on_change(AgentChange(op, key, None, 2))  # hv-a's lease lapsed, or a late delete of its record
        assert not [e for e in sent if e.event == "node_removed"], (op, sent)
    assert [n.id for n in service.registry.nodes()] == ["n1"]
    # the id still held here, a newer record elsewhere is followed silently; once let go, that one is shown
    link._on_change(AgentChange("put", key, record(hv="hv-c", activity="working"), 3))
    assert sent == []
    service.publish(service.registry.deregister("n1", "conn", 4.0))
    assert [e.event for e in sent if e.event.startswith("node_")] == ["node_removed", "node_joined"], sent  # in order
    assert [e for e in sent if e.event == "node_joined"][-1].node.hv == "hv-c", sent
