"""Requests to machine services (hypivisor/machine_desk.py): routed to the connection that registered the machine,
answered only by it, failed with 1012 when it is offline, goes away or is too slow."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from hypivisor.machine_desk import MachineDesk
from hypivisor.machines import MachineBook
from pi_socket.errors import HypiError
from pi_socket.protocol import ErrorInfo, MachineFacts, MachineReplyParams, NodeInfo


def desk_with(name: str = "beta") -> tuple[MachineDesk, list[dict]]:
    desk = MachineDesk(MachineBook("hub"))
    sent: list[dict] = []
    desk.attach("c1", lambda frame: sent.append(orjson.loads(frame)) or True)
    desk.attach("dash", lambda frame: True)
    desk.book.register(name, MachineFacts(), None, "c1", 1.0, "s" * 32)
    return desk, sent


async def test_a_request_goes_to_the_machine_and_only_it_answers():
    desk, sent = desk_with()
    task = asyncio.create_task(desk.request("beta", "list_directories", {"path": "x"}, 5))
    await asyncio.sleep(0)
    [req] = sent
    assert req["event"] == "machine_request" and req["method"] == "list_directories" and req["params"] == {"path": "x"}
    assert not desk.reply("dash", MachineReplyParams(rid=req["rid"], result={"bad": 1}))  # not its request
    assert not desk.reply("c1", MachineReplyParams(rid="other", result={}))
    assert desk.reply("c1", MachineReplyParams(rid=req["rid"], result={"ok": 1}))
    assert await task == {"ok": 1}


async def test_the_machine_error_is_the_answer():
    desk, sent = desk_with()
    task = asyncio.create_task(desk.request("beta", "list_directories", {}, 5))
    await asyncio.sleep(0)
    desk.reply("c1", MachineReplyParams(rid=sent[0]["rid"], error=ErrorInfo(code=1003, message="outside")))
    with pytest.raises(HypiError) as err:
        await task
    assert (err.value.code, err.value.message) == (1003, "outside")


async def test_offline_unknown_gone_and_slow_are_1012():
    desk, sent = desk_with()
    with pytest.raises(HypiError) as err:
        await desk.request("nowhere", "list_directories", {}, 5)
    assert err.value.code == 1012 and "not known" in err.value.message
    task = asyncio.create_task(desk.request("beta", "list_directories", {}, 5))
    await asyncio.sleep(0)
    events = desk.detach("c1", 2.0)  # the service's connection ends mid-request
    with pytest.raises(HypiError) as err:
        await task
    assert err.value.code == 1012 and [e.event for e in events] == ["machine_left"]  # type: ignore[attr-defined]
    with pytest.raises(HypiError) as err:
        await desk.request("beta", "list_directories", {}, 5)
    assert err.value.code == 1012 and "offline" in err.value.message
    desk2, _ = desk_with()
    with pytest.raises(HypiError) as err:
        await desk2.request("beta", "list_directories", {}, 0.05)
    assert err.value.code == 1012 and "did not answer" in err.value.message
    assert desk2._pending == {}  # noqa: SLF001 - nothing left waiting


async def test_a_spawned_node_is_told_to_the_machine_that_started_it():
    desk, sent = desk_with()
    task = asyncio.create_task(desk.spawn("beta", {"path": "~"}, 5))
    await asyncio.sleep(0)
    [req] = sent
    spawn_id = req["params"]["spawn_id"]
    assert req["method"] == "spawn_agent" and req["params"]["timeout"] == 5 and len(spawn_id) >= 24
    node = NodeInfo(id="n1", machine="beta", cwd="/w", port=1)
    assert not desk.node_registered(node, "forged-spawn-id")
    assert not desk.node_registered(node, None)
    assert desk.node_registered(node, spawn_id)
    assert sent[1]["method"] == "spawn_registered" and sent[1]["params"]["spawn_id"] == spawn_id
    desk.reply("c1", MachineReplyParams(rid=req["rid"], result={"node_id": "someone-else", "tmux_session": "s"}))
    assert await task == {"node_id": "n1", "tmux_session": "s"}  # the node that presented the secret, not a claim
    assert not desk.node_registered(node, spawn_id)  # the spawn ended: its secret is spent


async def test_a_machine_answering_before_its_agent_registered_is_a_failed_spawn():
    desk, sent = desk_with()
    task = asyncio.create_task(desk.spawn("beta", {"path": "~"}, 5))
    await asyncio.sleep(0)
    desk.reply("c1", MachineReplyParams(rid=sent[0]["rid"], result={"node_id": "n-existing"}))
    with pytest.raises(HypiError) as err:
        await task
    assert err.value.code == 1009 and "before its agent registered" in err.value.message
