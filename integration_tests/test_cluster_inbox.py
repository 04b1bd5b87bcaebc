"""The inbox and Web Push across hypivisors (specs/cluster.md §6): real ``python -m hypivisor --nats …`` processes on
the 3-node NATS fixture, agents simulated as plain ``/ws`` registrations (as a bridge registers and reports its
attention), devices served by the local RFC 8030 push service (``harness/push_stub.py``).

* an item raised by an agent on A is listed and evented on B; a dismiss on B ends it on A (and it stays ended while
  its cause lasts, and after B restarts); a read on B ends the run's item on A and zeroes the count on every card;
* with three hypivisors and a device subscribed on one of them, each push-worthy item reaches the push service
  exactly once, signed with the site's one VAPID key, whichever hypivisor holds the agent; a page on another
  hypivisor looking at the agent suppresses its "finished";
* a stalled agent is pushed once across the cluster (whichever hypivisor the push queue hands each new item to),
  until a page on any hypivisor looks at it;
* an item whose push was in flight when its owner (and the hypivisor sending it) were SIGKILLed still goes out
  exactly once, from a surviving hypivisor, after the push queue's ack wait; the agent failing over to a survivor
  with the same cause is the same item there (adopted), never a second item or push.

Every wait is bounded; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, node_params, until
from integration_tests.harness.push_stub import PushStub

TOKEN = "cluster-inbox-token"
LEASE_TTL = 2.0
ACK_WAIT = 2.0  # the push queue hands an item of a hypivisor that stopped acknowledging it to another after this
QUIET = 1.5  # seconds in which a push that should not come would have come
_sites = itertools.count(1)


def start_hypivisors(nats_cluster: Any, factory: Callable[..., HypivisorProc], n: int) -> list[HypivisorProc]:
    site = f"inbox{next(_sites)}x{int(time.time()) % 100000}"  # a fresh stream, consumer and buckets per test
    urls = nats_cluster.urls
    env = {"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL), "HYPI_NATS_PUSH_ACK_WAIT": str(ACK_WAIT)}
    return [factory(token=TOKEN, args=["--nats", ",".join(urls[i:] + urls[:i])], env=env) for i in range(n)]


def live(kind: str, key: str, summary: str, **extra: Any) -> dict:
    return {"kind": kind, "key": key, "summary": summary, "created_at": time.time() - 5, **extra}


def run(key: str, outcome: str, summary: str, new_messages: int = 1) -> dict:
    return {"key": key, "outcome": outcome, "summary": summary, "at": time.time() - 1, "new_messages": new_messages}


async def report(agent: RegistryClient, node_id: str, live_: list[dict], last_run: dict | None = None) -> None:
    attention: dict[str, Any] = {"live": live_}
    if last_run is not None:
        attention["last_run"] = last_run
    reply = await agent.call("heartbeat", {"id": node_id, "attention": attention})
    assert "result" in reply, reply


async def result(client: RegistryClient, method: str, **params: Any) -> dict:
    reply = await client.call(method, params)
    assert "result" in reply, reply
    return reply["result"]


async def added(client: RegistryClient, node_id: str, kind: str, timeout: float = 10.0) -> dict:
    """The next ``attention_added`` of ``node_id`` and ``kind`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        for i, ev in enumerate(client.events):
            item = ev.get("item") or {}
            if ev["event"] == "attention_added" and item.get("node_id") == node_id and item.get("kind") == kind:
                return client.events.pop(i)["item"]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no attention_added {kind} of {node_id} within {timeout} s; got {client.events}")
        with contextlib.suppress(TimeoutError):
            await client._read_one(remaining)


async def card(client: RegistryClient, node_id: str) -> dict | None:
    nodes = (await result(client, "list_nodes"))["nodes"]
    return next((n for n in nodes if n["id"] == node_id), None)


async def test_an_item_on_one_hypivisor_is_on_every_dashboard_and_a_dismiss_or_read_anywhere_ends_it(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b = start_hypivisors(nats_cluster, hypivisor_factory, 2)
    async with (
        await RegistryClient.connect(a) as agent,
        await RegistryClient.connect(a) as dash_a,
        await RegistryClient.connect(b) as dash_b,
    ):
        for client in (agent, dash_a, dash_b):
            await client.event("init")
        causes = [
            live("approval", "ap-1", "bash `rm -rf build`", approval_id="ap-1", tool_name="bash"),
            live("question", "q-1", "Overwrite config?"),
        ]
        params = node_params("inbox-agent", 41001, machine="machine-a", attention={"live": causes})
        assert "result" in await agent.call("register", params)
        approval = await added(dash_b, "inbox-agent", "approval")
        question = await added(dash_b, "inbox-agent", "question")
        assert approval["summary"] == "bash `rm -rf build`" and approval["approval_id"] == "ap-1"
        assert approval["id"] != question["id"] and approval["id"].startswith("att-")
        listed = (await result(dash_b, "list_attention"))["items"]
        assert [i["id"] for i in listed] == [approval["id"], question["id"]]

        # a dismiss on B ends A's item on A (A's own dashboards hear it from A's book) and on B
        dismissed = await result(dash_b, "dismiss_attention", id=approval["id"])
        assert dismissed == {"status": "dismissed", "id": approval["id"]}
        assert (await dash_a.event("attention_resolved", id=approval["id"]))["by"] == "dismissed"
        assert (await dash_b.event("attention_resolved", id=approval["id"]))["by"] == "dismissed"
        await report(agent, "inbox-agent", causes)  # the cause still lasts: it stays dismissed
        for dash in (dash_a, dash_b):
            assert [i["id"] for i in (await result(dash, "list_attention"))["items"]] == [question["id"]]
        refused = await dash_b.call("dismiss_attention", {"id": approval["id"]})
        assert refused["error"]["code"] == 1006, refused  # already ended: as on one hypivisor

        # a run with two new messages: B's card shows the owner's count; a read on B ends the item and the count
        await report(agent, "inbox-agent", causes[1:], run("r1", "finished", "Tests pass", new_messages=2))
        finished = await added(dash_b, "inbox-agent", "finished")
        await until(lambda: _unread(dash_b, "inbox-agent", 2), 10, "unread 2 on B's card")
        assert (await dash_b.event("unread_changed", node_id="inbox-agent"))["unread"] == 2
        assert (await result(dash_b, "list_attention"))["unread"] == {"inbox-agent": 2}
        assert (await result(dash_b, "mark_read", node_id="inbox-agent"))["unread"] == 0
        assert (await dash_a.event("attention_resolved", id=finished["id"]))["by"] == "read"
        assert (await dash_b.event("attention_resolved", id=finished["id"]))["by"] == "read"
        await until(lambda: _unread(dash_b, "inbox-agent", 0), 10, "unread 0 on B's card")
        assert (await dash_b.event("unread_changed", node_id="inbox-agent"))["unread"] == 0
        await until(lambda: _unread(dash_a, "inbox-agent", 0), 10, "unread 0 on A's card")

        # B restarts: its inbox is the stream's replay: the question, not the dismissed or read items
        b.restart()
        async with await RegistryClient.connect(b) as dash_b2:
            await dash_b2.event("init")
            after = await result(dash_b2, "list_attention")
            assert [i["id"] for i in after["items"]] == [question["id"]], after


async def _unread(client: RegistryClient, node_id: str, n: int) -> bool:
    node = await card(client, node_id)
    return node is not None and node["unread"] == n


async def subscribe_phone(stub: PushStub, via: HypivisorProc, others: list[HypivisorProc]) -> None:
    """The device subscribes through ``via``; every hypivisor signs with the same key and knows the device."""
    async with await RegistryClient.connect(via) as page:
        await page.event("init")
        key = (await result(page, "push_config", device_id="phone"))["public_key"]
        stub.expected_key = key
        await result(page, "push_subscribe", device_id="phone", subscription=stub.subscription("phone"))
    for hv in others:
        async with await RegistryClient.connect(hv) as page:
            await page.event("init")
            assert (await result(page, "push_config", device_id="phone"))["public_key"] == key
            await until(lambda p=page: _knows_phone(p), 10, "the device known on every hypivisor")


async def _knows_phone(page: RegistryClient) -> bool:
    return (await result(page, "push_config", device_id="phone"))["device"] is not None


async def test_each_push_goes_out_once_across_three_hypivisors_and_a_page_anywhere_counts_as_looking(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b, c = start_hypivisors(nats_cluster, hypivisor_factory, 3)
    stub = PushStub()
    try:
        await subscribe_phone(stub, b, [a, c])
        async with (
            await RegistryClient.connect(a) as agent_a,
            await RegistryClient.connect(c) as agent_c,
            await RegistryClient.connect(c) as laptop_on_c,
            await RegistryClient.connect(b) as dash_b,
        ):
            for client in (agent_a, agent_c, laptop_on_c, dash_b):
                await client.event("init")
            for agent, node_id in ((agent_a, "push-a"), (agent_c, "push-c")):
                cwd = f"/srv/{node_id}"
                assert "result" in await agent.call("register", node_params(node_id, 41100, cwd=cwd, machine=node_id))
            approval_a = [live("approval", "ap-1", "bash `make`", approval_id="ap-1")]
            question_c = [live("question", "q-1", "Which branch?")]
            await report(agent_a, "push-a", approval_a)
            await report(agent_c, "push-c", question_c)
            await report(agent_a, "push-a", approval_a, run("r1", "finished", "Built"))  # the causes last: still open
            await report(agent_c, "push-c", question_c, run("r2", "error", "429 rate limited"))
            items = [await added(dash_b, "push-a", "approval"), await added(dash_b, "push-c", "question"),
                     await added(dash_b, "push-a", "finished"), await added(dash_b, "push-c", "error")]  # fmt: skip
            await until(lambda: _count(stub, 4), 15, "four pushes")
            await asyncio.sleep(QUIET)  # nothing twice: every hypivisor fetches from the one push queue
            got = sorted(r.payload["item_id"] for r in stub.to("phone"))
            assert got == sorted(i["id"] for i in items), [r.payload for r in stub.to("phone")]
            titles = sorted(r.payload["title"] for r in stub.to("phone"))
            assert titles == ["push-a finished", "push-a needs approval", "push-c asks", "push-c failed"]

            # a page on C looks at push-a (on A): its "finished" goes to nobody; its next approval still does
            await result(laptop_on_c, "set_presence", device_id="laptop", node_id="push-a", focused=True, visible=True)
            await asyncio.sleep(0.3)  # presence is a core NATS event: it reaches A and B within milliseconds
            await report(agent_a, "push-a", approval_a, run("r3", "finished", "Built again"))
            await added(dash_b, "push-a", "finished")
            await asyncio.sleep(QUIET)
            assert len(stub.to("phone")) == 4
            await report(
                agent_a, "push-a", [*approval_a, live("approval", "ap-2", "bash `make install`", approval_id="ap-2")]
            )
            await until(lambda: _count(stub, 5), 10, "the approval pushed while someone looks")
            assert stub.to("phone")[4].payload["title"] == "push-a needs approval"
        assert stub.errors == []
    finally:
        stub.close()


async def test_a_stalled_agent_is_pushed_once_across_the_cluster_until_a_person_looks_at_it(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    """Stalled (and budget) notify once per agent until someone looks at it, whichever hypivisor the push queue
    hands each new item to: the claim is one create in the site's push bucket, the look anywhere re-arms it."""
    a, b, c = start_hypivisors(nats_cluster, hypivisor_factory, 3)
    stub = PushStub()
    try:
        await subscribe_phone(stub, b, [a, c])
        async with (
            await RegistryClient.connect(a) as agent,
            await RegistryClient.connect(b) as dash_b,
            await RegistryClient.connect(c) as laptop_on_c,
        ):
            for client in (agent, dash_b, laptop_on_c):
                await client.event("init")
            assert "result" in await agent.call("register", node_params("stuck", 41300, cwd="/srv/stuck", machine="m"))

            async def stall(k: int) -> None:  # a new stalled item (a new cause key), open a while, then it ends
                await report(agent, "stuck", [live("stalled", f"st-{k}", f"no output for {k + 10} min")])
                item = await added(dash_b, "stuck", "stalled")
                deadline = time.monotonic() + 0.5  # its push, if it has one, arrives well within this
                while time.monotonic() < deadline and item["id"] not in {
                    r.payload["item_id"] for r in stub.to("phone")
                }:
                    await asyncio.sleep(0.02)
                await report(agent, "stuck", [])
                await dash_b.event("attention_resolved")

            for k in range(8):  # eight items, handed to the three hypivisors as they fetch: all on one is ~0.05 %
                await stall(k)
            await until(lambda: _count(stub, 1), 10, "the first stalled push")
            await asyncio.sleep(QUIET)
            assert [r.payload["title"] for r in stub.to("phone")] == ["stuck is stalled"]

            # a page on C looks at the agent: armed again on every hypivisor, so the next stall pushes (once)
            await result(laptop_on_c, "set_presence", device_id="laptop", node_id="stuck", focused=True, visible=True)
            await result(laptop_on_c, "set_presence", device_id="laptop", node_id=None, focused=True, visible=True)
            await asyncio.sleep(0.5)  # the bucket's delete reaches every hypivisor within milliseconds
            for k in range(8, 14):
                await stall(k)
            await until(lambda: _count(stub, 2), 10, "the stalled push after the look")
            await asyncio.sleep(QUIET)
            assert [r.payload["title"] for r in stub.to("phone")] == ["stuck is stalled"] * 2
        assert stub.errors == []
    finally:
        stub.close()


async def _count(stub: PushStub, n: int) -> bool:
    assert len(stub.to("phone")) <= n, [r.payload for r in stub.to("phone")]
    return len(stub.to("phone")) == n


def pid_of_connection(local_port: int, remote_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP connection from ``local_port`` to ``remote_port`` (Linux /proc)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if (
                    int(fields[1].rsplit(":", 1)[1], 16) == local_port
                    and int(fields[2].rsplit(":", 1)[1], 16) == remote_port
                ):
                    inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="finds the sending process through Linux /proc")
async def test_a_push_in_flight_when_its_owner_and_sender_die_goes_out_once_from_a_survivor(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    hvs = start_hypivisors(nats_cluster, hypivisor_factory, 3)
    a = hvs[0]
    stub = PushStub(drop_gone_senders=True)
    try:
        await subscribe_phone(stub, hvs[1], [hvs[0], hvs[2]])
        async with await RegistryClient.connect(a) as agent:
            await agent.event("init")
            assert "result" in await agent.call(
                "register", node_params("doomed", 41200, cwd="/srv/doomed", machine="machine-a")
            )
            stub.hold()  # the push service takes the request and does not answer yet
            await report(agent, "doomed", [live("approval", "ap-1", "bash `deploy`", approval_id="ap-1")])
            await until(lambda: _arrived(stub), 10, "the push in flight")
            stub_port = int(stub.origin.rsplit(":", 1)[1])
            sender = pid_of_connection(stub.senders[0], stub_port, [hv.proc.pid for hv in hvs if hv.proc])
            assert sender is not None, "the sending hypivisor was not found"
            dead = [hv for hv in hvs if hv is a or (hv.proc is not None and hv.proc.pid == sender)]
            for hv in dead:  # the owner (A) and the hypivisor sending its push: neither can finish or acknowledge
                hv.kill()
        t0 = time.monotonic()
        stub.release()
        await until(lambda: _count(stub, 1), ACK_WAIT + 10, "the push from a surviving hypivisor")
        took = time.monotonic() - t0
        await asyncio.sleep(QUIET)
        assert len(stub.to("phone")) == 1 and stub.gone == 1, (stub.gone, stub.arrived)
        assert stub.to("phone")[0].payload["title"] == "doomed needs approval"
        item_id = stub.to("phone")[0].payload["item_id"]

        # the agent's bridge fails over to a survivor, still waiting for the same approval: the survivor's book
        # takes the item over (same id, no second item, no second push) and ends it when the cause ends
        survivor = next(hv for hv in hvs if hv not in dead)
        async with await RegistryClient.connect(survivor) as agent, await RegistryClient.connect(survivor) as dash:
            await agent.event("init")
            await dash.event("init")
            causes = [live("approval", "ap-1", "bash `deploy`", approval_id="ap-1")]
            params = node_params("doomed", 41200, cwd="/srv/doomed", machine="machine-a", attention={"live": causes})
            assert "result" in await agent.call("register", params)
            items = (await result(dash, "list_attention"))["items"]
            assert [(i["id"], i["kind"]) for i in items] == [(item_id, "approval")], items
            await asyncio.sleep(QUIET)
            assert len(stub.to("phone")) == 1
            await report(agent, "doomed", [])  # decided in pi: the cause ends
            assert (await dash.event("attention_resolved", id=item_id))["by"] == "cause"
            assert (await result(dash, "list_attention"))["items"] == []
        print(f"\nowner{' = sender' if len(dead) == 1 else ' and sender'} SIGKILLed mid-push -> sent once by a "
              f"survivor {took:.2f} s later (ack wait {ACK_WAIT} s)")  # fmt: skip
    finally:
        stub.close()


async def _arrived(stub: PushStub) -> bool:
    return stub.arrived >= 1
