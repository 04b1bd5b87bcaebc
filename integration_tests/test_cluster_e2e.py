"""The cluster end to end (specs/cluster.md §10, issue "Beyond one hypivisor"): everything real, on loopback.

Three ``python -m hypivisor --nats …`` processes (A, B, C: one token, one site) on the 3-node NATS fixture, each
connected to its own NATS node first; two machines, each a real machine service (``python -m pi_socket serve``,
started by the first shim of its HOME) hosting real pi agents (the newest pinned pi, on the fake LLM):

* machine ``e2e-one`` (``HYPIVISOR_WS=C``: links to its agent through A or B take the hop through C): ``solo``;
* machine ``e2e-two`` (``HYPIVISOR_WS=B,A,C``): the agents ``streamer`` and ``asker`` (approval policy ``writes``).

One scenario, in order (each step starts from the state the one before left):

a. a dashboard on every hypivisor lists every machine and every machine's agents;
b. a prompt through A's agent link reaches ``streamer`` (held by B) and its streamed reply arrives;
c. SIGKILL of B while ``streamer`` streams a long reply watched through A and ``asker`` waits for an approval:
   machine ``e2e-two`` and both its agents are A's within 2 s; a dashboard opening ``streamer`` again through A sees
   the rest of the stream (its partial message plus the deltas after it is the whole reply, as pi said it), and the
   link open before either ended with B or, dialled back to A, streamed on with nothing lost; the history holds the
   reply and its prompt exactly once; the approval is still pending (the roster cards on A and C, the agent's
   ``init_state``) and is decided once: ``decide_approval`` through C allows it, the tool runs once, and later
   decisions (agent links on A and C, ``decide_approval`` on A) are refused with 1013;
d. SIGKILL of one NATS node (A's own): the link A → C → ``solo`` open before stays open and answers a prompt, a
   lasting roster change in each direction reaches the dashboards on A and C, a new link across hypivisors opens and
   an approval is decided through it; and since B's death no agent left or went offline on a surviving roster.

Every wait is bounded; the figures (fail-over time, NATS node loss) are printed. The module's NATS cluster serves
this one test, so the killed node is not started again.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from integration_tests.harness.hypivisor_proc import HypivisorProc
from integration_tests.harness.pi_proc import PI_VERSIONS, PiHome, RpcPi, pi_bin, wait_until
from integration_tests.test_pi_link import assistant_end, is_type, prompt, run_done, text_of
from integration_tests.test_pi_resilience import node_event, registry, rpc_reply_text

pytestmark = [pytest.mark.pi]

TOKEN = "cluster-e2e-token"  # one token for every hypivisor of the cluster (it also authenticates their hops)
# Longer than a JetStream leader election (0.7 to 6 s measured on loopback, §8): a lease put that waits out the
# election of its bucket must not lapse meanwhile, or every hypivisor drops the holder's agents for a moment.
# Nothing here waits for a lease to lapse (an agent that moved is re-put at once by its new holder).
LEASE_TTL = 15.0
FAILOVER_S = 2.0
PI = PI_VERSIONS[-1]  # the newest pinned pi: one version keeps the wall time low
_sites = itertools.count(1)


def start_cluster(nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]) -> list[HypivisorProc]:
    site = f"e2e{next(_sites)}x{int(time.time()) % 100000}"  # a fresh roster (the NATS cluster is the module's)
    urls = nats_cluster.urls
    return [
        hypivisor_factory(
            token=TOKEN,
            args=["--nats", ",".join(urls[i:] + urls[:i])],  # its own NATS node first
            env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL)},
        )
        for i in range(3)
    ]


def rpc(dash: Any, method: str, params: dict | None = None, timeout: float = 10) -> dict:
    """One registry request over a dashboard's ``/ws``: the whole reply ({id, result} or {id, error})."""
    rid = f"{method}-{time.monotonic_ns()}"
    mark = len(dash.frames)
    dash.send({"id": rid, "method": method, **({"params": params} if params is not None else {})})
    return dash.wait_for(lambda f: f.get("id") == rid, start=mark, timeout=timeout)


def call(dash: Any, method: str, params: dict | None = None, timeout: float = 10) -> dict:
    reply = rpc(dash, method, params, timeout)
    assert "result" in reply, reply
    return reply["result"]


def decide_approval(dash: Any, node_id: str, approval_id: str, decision: str, by: str) -> dict:
    """``decide_approval`` through a dashboard, retried (bounded) while the owner has not yet written the record."""
    params = {"node_id": node_id, "approval_id": approval_id, "decision": decision, "by": by}
    deadline = time.monotonic() + 10
    while True:
        reply = rpc(dash, "decide_approval", params, timeout=15)
        if "no open approval" not in str((reply.get("error") or {}).get("message")) or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def roster(dash: Any) -> dict[str, dict]:
    return {n["id"]: n for n in call(dash, "list_nodes")["nodes"]}


def online_machines(dash: Any) -> set[str]:
    return {m["name"] for m in call(dash, "list_machines")["machines"] if m["online"]}


def text_deltas(frames: list[dict]) -> str:
    return "".join(
        f["assistantMessageEvent"].get("delta", "")
        for f in frames
        if f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta"
    )


def shown(frames: list[dict]) -> str:
    """The assistant text a dashboard shows after these frames: an ``init_state`` starts over from its partial
    message, a new assistant message from nothing, each text delta appends."""
    text = ""
    for f in frames:
        kind = f.get("type")
        if kind == "init_state":
            text = text_of(f.get("partial") or {})
        elif kind == "message_start" and (f.get("message") or {}).get("role") == "assistant":
            text = ""
        elif kind == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta":
            text += f["assistantMessageEvent"].get("delta", "")
        elif assistant_end(f):
            return text
    return text


def assistant_texts(messages: list[dict]) -> list[str]:
    return [text_of(m) for m in messages if m.get("role") == "assistant"]


def test_a_hypivisor_starting_while_a_nats_node_is_down_waits_for_it(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    """JetStream does not answer while the NATS server that led its meta group is away (the other two elect a new
    leader, which took ~9 s here; a fresh cluster settling answers "no suitable peers for placement" for a moment
    too): a hypivisor starting then waits (within its start timeout) instead of exiting. The server killed is the
    meta leader: with another one killed, three-replica buckets could still be made at once (placed on the two
    servers left and the one away) and nothing would have to wait. The site's registry buckets exist already (made
    by a backplane while all three ran)."""
    import asyncio
    import threading

    from hypivisor.cluster.nats_backplane import NatsBackplane, NatsSettings

    site = f"e2e{next(_sites)}w{int(time.time()) % 100000}"

    async def make_buckets() -> None:
        bp = NatsBackplane(NatsSettings("hv-maker", site, ttl_s=LEASE_TTL, heartbeat_s=LEASE_TTL / 3,
                                        liveness="lease", servers=tuple(nats_cluster.urls), replicas=3))  # fmt: skip
        await bp.start()
        await bp.close()

    async def placement_fails() -> bool:
        """JetStream no longer answers (a kill is not seen at once): a new three-replica stream cannot be made.
        False when it still could after 15 s."""
        import nats
        from nats.js.api import StreamConfig

        nc = await nats.connect(servers=[u for k, u in enumerate(nats_cluster.urls) if k != away], connect_timeout=2)
        try:
            js = nc.jetstream(timeout=2)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    await js.add_stream(StreamConfig(name=f"probe_{site}", subjects=[f"probe.{site}"], num_replicas=3))
                except Exception:  # noqa: BLE001 - no suitable peers (or no answer): what the test waits for
                    return True
                await js.delete_stream(f"probe_{site}")
                await asyncio.sleep(0.2)
            return False
        finally:
            await nc.close()

    asyncio.run(make_buckets())
    names = [n.name for n in nats_cluster.nodes]
    leader = ((nats_cluster.nodes[0].monitor("/jsz") or {}).get("meta_cluster") or {}).get("leader")
    assert leader in names, f"no JetStream meta leader named by {names[0]}: {leader!r}"
    away = names.index(leader)
    nats_cluster.kill(away)
    if not asyncio.run(placement_fails()):
        nats_cluster.restart(away)
        pytest.skip("JetStream kept answering with its meta leader away for 15 s: nothing to wait for")
    back = threading.Timer(2.0, nats_cluster.restart, (away,))
    back.start()
    try:
        t0 = time.monotonic()
        hv = hypivisor_factory(
            token=TOKEN,
            args=["--nats", ",".join(nats_cluster.urls)],
            env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL)},
        )
        assert hv.proc is not None and hv.proc.poll() is None
        assert time.monotonic() - t0 >= 1.5  # it did wait for the server
    finally:
        back.join(30)
    assert nats_cluster.nodes[away].alive


def test_three_hypivisors_two_machines_real_pi_lose_nothing(
    nats_cluster: Any,
    hypivisor_factory: Callable[..., HypivisorProc],
    start_pi: Any,
    pi_home: PiHome,
    agent_client: Any,
    fake_llm: Any,
    tmp_path: Path,
) -> None:
    if not pi_bin(PI).exists():
        pytest.skip(f"pi {PI} is not installed: run bash integration_tests/setup_env.sh")
    t_start = time.monotonic()
    a, b, c = start_cluster(nats_cluster, hypivisor_factory)
    hvs = {"A": a, "B": b, "C": c}
    dash = {name: registry(agent_client, hv) for name, hv in hvs.items()}

    def lst(*order: HypivisorProc) -> str:
        return ",".join(hv.ws_url for hv in order)

    # machine e2e-one: the test's own pi home; its first shim starts the machine service with this environment.
    # It lists C only, so its bridge refuses to dial back to A or B: a link through them takes the hop through C
    # (§7 step 3), while machine e2e-two's agents, listing all three, are dialled back to the asking hypivisor.
    solo = start_pi(PI, env={"HYPI_TOKEN": TOKEN, "PI_SOCKET_MACHINE": "e2e-one", "HYPIVISOR_WS": lst(c)})
    # machine e2e-two: a second HOME and runtime dir, so a second machine service
    two = PiHome(tmp_path / "two", fake_llm)
    two_env = {"HYPI_TOKEN": TOKEN, "PI_SOCKET_MACHINE": "e2e-two", "HYPIVISOR_WS": lst(b, a, c)}
    (two.cwd / "asker").mkdir()
    pis: list[RpcPi] = []
    try:
        for cwd, extra in ((two.cwd, {}), (two.cwd / "asker", {"PI_SOCKET_APPROVAL": "writes"})):
            p = RpcPi(two, PI, cwd, {**two_env, **extra}, ())
            pis.append(p)
            p.wait_bridge()
        streamer, asker = pis
        assert pi_home.service_pid() and two.service_pid(), "each machine's agents are served by its service"
        assert solo.bridge_pid() is None and streamer.bridge_pid() is None and asker.bridge_pid() is None
        ids = {solo.node_id: "e2e-one", streamer.node_id: "e2e-two", asker.node_id: "e2e-two"}
        print(f"\nstarted 3 hypivisors, 2 machines, 3 pi {PI} in {time.monotonic() - t_start:.1f} s")

        # (a) every dashboard lists every machine's agents (a remote one carries its owner's hv)
        for name, d in dash.items():
            wait_until(lambda d=d: set(ids) <= set(roster(d)) and {"e2e-one", "e2e-two"} <= online_machines(d), 20,
                       f"every agent and machine on {name}'s dashboard")  # fmt: skip
            nodes = roster(d)
            assert {i: nodes[i]["machine"] for i in ids} == ids
            assert all(nodes[i]["status"] == "active" for i in ids)
        assert "hv" not in roster(dash["B"])[streamer.node_id] and roster(dash["A"])[streamer.node_id]["hv"]
        assert "hv" not in roster(dash["C"])[solo.node_id] and roster(dash["B"])[solo.node_id]["hv"]
        b_id = roster(dash["A"])[streamer.node_id]["hv"]
        assert roster(dash["C"])[asker.node_id]["hv"] == b_id

        # (b) a prompt through A reaches the agent B holds; its streamed reply arrives through A
        via_a = agent_client(a.agent_url(streamer.node_id), a.auth_headers)
        assert via_a.wait_for(is_type("init_state"))["node"]["id"] == streamer.node_id
        pid = prompt(via_a, "across the cluster")
        assert via_a.wait_for(is_type("ack", id=pid))["duplicate"] is False
        end = via_a.wait_for(assistant_end, timeout=30)
        assert text_of(end["message"]) == "Hello from fake LLM. You said: across the cluster"
        assert text_deltas(via_a.frames) == text_of(end["message"])  # streamed, every delta through the hop
        via_a.wait_for(run_done(PI))

        # (c) an approval pending on asker (asked through C), then a long stream on streamer (watched through A)
        ask_c = agent_client(c.agent_url(asker.node_id), c.auth_headers)
        ask_c.wait_for(is_type("init_state"))
        prompt(ask_c, "TOOLCALL: echo ran >> approved.txt")
        req = ask_c.wait_for(is_type("approval_request"), timeout=30)
        assert req["input"] == {"command": "echo ran >> approved.txt"}
        for name, d in dash.items():
            wait_until(lambda d=d: roster(d).get(asker.node_id, {}).get("pending_approvals") == 1, 10,
                       f"the pending approval on {name}'s roster card")  # fmt: skip
        reply = fake_llm.slow(words=100, delay=0.1)  # ~10 s of streaming
        mark = len(via_a.frames)
        since = len(streamer.events)
        prompt(via_a, "a long one")
        wait_until(lambda: len(text_deltas(via_a.frames[mark:])) >= 20, 20, "the long reply to stream through A")
        before_kill = text_deltas(via_a.frames[mark:])
        kill_marks = {n: len(dash[n].frames) for n in ("A", "C")}
        b.kill()
        killed = time.monotonic()

        def moved() -> bool:
            nodes = roster(dash["A"])
            own = [nodes.get(i, {}) for i in (streamer.node_id, asker.node_id)]
            held = all(n.get("status") == "active" and "hv" not in n for n in own)  # A's own now, active
            return held and "e2e-two" in online_machines(dash["A"])

        wait_until(moved, 10, "machine e2e-two and its agents on A", interval=0.02)
        took = time.monotonic() - killed
        print(f"SIGKILL of B -> machine e2e-two and its 2 agents were A's after {took:.2f} s")
        assert took <= FAILOVER_S, f"fail-over took {took:.2f} s"
        wait_until(lambda: "e2e-two" in online_machines(dash["C"]), 10, "machine e2e-two online on C (now A's)")
        # the stream resumes for a dashboard opening the agent again through A: what it shows (the latest init_state's
        # partial message and the deltas after it; the bridge sends a fresh init_state when its copy of the partial was
        # stale, as when nobody watched for a moment) is the whole reply
        again = agent_client(a.agent_url(streamer.node_id), a.auth_headers)
        init = again.wait_for(is_type("init_state"))
        assert init["is_streaming"] is True, "the reply ended before the link was back: make it longer"
        assert text_of(init["partial"] or {}).startswith(before_kill)
        # Two routes are right (§7): A splices to B's agent proxy (the link ends with B, at once: its sockets die with
        # it) or the bridge dialled back to A itself (no hop through B: the link lives on and streams the rest).
        try:
            wait_until(lambda: via_a.closed, 2, "the link through A to end with B")
        except AssertionError:
            via_a.wait_for(assistant_end, start=mark, timeout=30)
            assert shown(via_a.frames[mark:]) == reply, "the link that outlived B lost or repeated text"
            print("the first link through A did not pass B (the bridge dialled back to A): it streamed on")
        else:
            print("the first link through A passed B and ended with it")

        end = again.wait_for(assistant_end, timeout=30)
        assert text_of(end["message"]) == reply
        assert shown(again.frames) == reply, "the resumed stream lost or repeated text"
        again.wait_for(run_done(PI))
        assert rpc_reply_text(streamer, since) == reply  # what pi itself said
        history = agent_client(a.agent_url(streamer.node_id), a.auth_headers).wait_for(is_type("init_state"))
        texts = assistant_texts(history["messages"])
        assert texts.count(reply) == 1 and not [t for t in texts if t != reply and t.startswith("w0")], texts
        users = [text_of(m) for m in history["messages"] if m.get("role") == "user"]
        assert users.count("a long one") == 1, users

        # the approval outlived B: pending on every surviving hypivisor's roster card and in the agent's state
        for name in ("A", "C"):
            wait_until(lambda n=name: roster(dash[n]).get(asker.node_id, {}).get("pending_approvals") == 1, 10,
                       f"the pending approval on {name}'s roster card after B's death")  # fmt: skip
        decide_a = agent_client(a.agent_url(asker.node_id), a.auth_headers)  # local: A holds the bridge now
        pending = decide_a.wait_for(is_type("init_state"))["pending_approvals"]
        assert [p["id"] for p in pending] == [req["id"]]
        decide_c = agent_client(c.agent_url(asker.node_id), c.auth_headers)  # C → A → the agent
        decide_c.wait_for(is_type("init_state"))
        # decided once: decide_approval through C (the first decision wins cluster-wide, on the record B opened) is
        # forwarded to the bridge by its new owner A and the tool runs once; every later decision is refused (1013):
        # through the agent links on A and on C, and through the registry on A (naming the winner)
        won = decide_approval(dash["C"], asker.node_id, req["id"], "allow", "carol")
        assert won.get("result", {}).get("status") == "accepted", won
        for link in (decide_a, decide_c):
            resolved = link.wait_for(is_type("approval_resolved", id=req["id"]))
            assert resolved["decision"] == "allow"
        decide_a.wait_for(run_done(PI), timeout=30)
        for link in (decide_a, decide_c):
            mark = len(link.frames)
            link.send({"type": "approval_decision", "id": req["id"], "decision": "deny"})
            assert link.wait_for(is_type("error", id=req["id"]), start=mark)["code"] == 1013
        late = rpc(dash["A"], "decide_approval",
                   {"node_id": asker.node_id, "approval_id": req["id"], "decision": "deny", "by": "alice"})  # fmt: skip
        assert late["error"]["code"] == 1013 and "allow by carol" in late["error"]["message"], late
        assert (asker.cwd / "approved.txt").read_text() == "ran\n"  # the tool ran once
        assert len(decide_a.of_type("tool_execution_end")) == 1
        for name in ("A", "C"):
            wait_until(lambda n=name: not roster(dash[n]).get(asker.node_id, {}).get("pending_approvals"), 10,
                       f"no pending approval on {name}'s card once decided")  # fmt: skip

        # (d) SIGKILL of A's own NATS node. A roster change waits for the agents bucket's new stream leader when the
        # lost node led it (0.7 to 6 s) and a short-lived state may be coalesced away meanwhile, so the changes made
        # here last: a policy set on solo (C's, seen by A through its watch, recreated on another node) and an
        # approval opened on asker (A's, seen by C). The link A → C → solo, open before, stays open and answers.
        solo_a = agent_client(a.agent_url(solo.node_id), a.auth_headers)
        solo_a.wait_for(is_type("init_state"))
        marks = {n: len(dash[n].frames) for n in ("A", "C")}
        nats_cluster.kill(0)
        lost = time.monotonic()

        def on_both(pred: Callable[[dict], bool], what: str) -> None:
            for name in ("A", "C"):
                d = dash[name]
                try:
                    d.wait_for(pred, start=marks[name], timeout=20)  # an election took up to 8 s here
                except AssertionError:
                    seen = [(f.get("event"), (f.get("node") or {}).get("id")) for f in d.frames[marks[name] :]]
                    raise AssertionError(
                        f"{name}'s dashboard: no {what} after the NATS node's loss; saw {seen}"
                    ) from None

        solo_a.send({"type": "set_approval_policy", "policy": "all"})
        solo_mark = len(solo_a.frames)
        pid = prompt(solo_a, "while a NATS node is gone")
        solo_a.wait_for(is_type("ack", id=pid))
        end = solo_a.wait_for(assistant_end, start=solo_mark, timeout=30)
        assert text_of(end["message"]) == "Hello from fake LLM. You said: while a NATS node is gone"
        assert shown(solo_a.frames[solo_mark:]) == text_of(end["message"])  # streamed through the open link
        answered = time.monotonic() - lost
        on_both(node_event("node_updated", solo.node_id, approval_policy="all"), "policy change of solo")
        # a new link across hypivisors (C → A, asked over NATS) opens, and asker's new approval reaches both rosters
        link = agent_client(c.agent_url(asker.node_id), c.auth_headers)
        assert link.wait_for(is_type("init_state"), timeout=15)["node"]["id"] == asker.node_id
        prompt(link, "TOOLCALL: echo again >> approved.txt")
        second = link.wait_for(is_type("approval_request"), timeout=30)
        on_both(node_event("node_updated", asker.node_id, pending_approvals=1), "pending approval of asker")
        seen = time.monotonic() - lost
        mark = len(link.frames)
        link.send({"type": "approval_decision", "id": second["id"], "decision": "deny"})
        assert link.wait_for(is_type("approval_resolved", id=second["id"]), start=mark)["decision"] == "deny"
        link.wait_for(run_done(PI), start=mark, timeout=30)
        assert (asker.cwd / "approved.txt").read_text() == "ran\n"  # denied: it did not run
        on_both(node_event("node_updated", asker.node_id, pending_approvals=0), "decided approval of asker")
        assert not solo_a.closed
        dialled = [json.loads(line) for line in a.log_lines().splitlines() if '"agent link dialled back"' in line]
        assert not [r for r in dialled if r.get("node_id") == solo.node_id]  # the link to solo was the hop via C
        for name in ("A", "C"):  # nothing lost: since B's SIGKILL no agent left or went offline on a surviving roster
            assert set(ids) <= set(roster(dash[name]))
            events = dash[name].frames[kill_marks[name] :]
            gone = [(f["event"], f.get("id") or (f.get("node") or {}).get("id")) for f in events
                    if f.get("event") in ("node_removed", "node_offline")]  # fmt: skip
            assert not [g for g in gone if g[1] in ids], f"{name}'s dashboard: {gone}"
        print(
            f"SIGKILL of a NATS node -> a prompt through the open link answered after {answered:.2f} s, both "
            f"dashboards had both roster changes after {seen:.2f} s; whole test {time.monotonic() - t_start:.1f} s"
        )
    finally:
        for p in reversed(pis):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - teardown reaches every process
                pass
        two.stop_service()
