"""The other hypivisors' machines (hypivisor/cluster/machine_mirror.py): records → the merged list and the machine
events of this hypivisor's dashboards; a live connection here wins; names keep their secret across hypivisors.
And the key of a machine's record (hypivisor/cluster/names.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hypivisor.cluster.machine_mirror import RemoteMachines, machine_record, secret_digest, strong
from hypivisor.cluster.names import AgentKey, machine_key
from pi_socket.protocol import MachineInfo


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
    assert kinds(m.apply("put", "alpha", rec(agents=1), None)[0]) == ["machine_updated"]
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
