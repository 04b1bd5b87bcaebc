"""Approvals through the registry (specs/cluster.md §5): ``decide_approval`` on any hypivisor, the first decision wins
cluster-wide, and a pending approval survives its owner hypivisor.

Real ``python -m hypivisor --nats …`` processes on the 3-node NATS fixture (each on its own NATS node first), the
newest pinned pi with the approval gate (``writes``) on the fake LLM, its real shim and bridge:

* a tool call waits while the bridge is on A; ``decide_approval`` through B allows it and the tool runs once; a
  third decision through C conflicts, naming the winner;
* two decisions at once through A and B: exactly one is accepted, the other is 1013 naming the winner, and the tool
  ran (allow) or not (deny) accordingly;
* SIGKILL of A while the approval is pending: the shared record is still pending, a decision through C while no
  hypivisor holds the agent is recorded, and once the bridge fails over to B it is forwarded once and the tool runs
  once;
* one process (no ``--nats``): ``decide_approval`` over ``/ws`` works, a second one conflicts, unknown ids are clear
  errors.

Every wait is bounded; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from integration_tests.harness.hypivisor_proc import HypivisorProc
from integration_tests.harness.pi_proc import PINNED_PI_VERSIONS, wait_until
from integration_tests.test_machine_hosting import served
from integration_tests.test_pi_approvals import WRITES, ask
from integration_tests.test_pi_link import is_type, prompt, run_done
from integration_tests.test_pi_resilience import node_event, registry

TOKEN = "cluster-approvals-token"
LEASE_TTL = 2.0
PI = PINNED_PI_VERSIONS[-1]  # the newest pinned pi
_sites = itertools.count(1)

pytestmark = pytest.mark.pi


def start_hypivisors(nats_cluster: Any, factory: Callable[..., HypivisorProc], n: int) -> tuple[str, list]:
    site = f"ap{next(_sites)}x{int(time.time()) % 100000}"  # a fresh roster and approvals bucket per test
    urls = nats_cluster.urls
    hvs = [
        factory(
            token=TOKEN,
            args=["--nats", ",".join(urls[i % 3 :] + urls[: i % 3])],
            env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL)},
        )
        for i in range(n)
    ]
    return site, hvs


_rids = itertools.count(1)


def call(dash: Any, method: str, params: dict, timeout: float = 15) -> dict:
    rid = f"r{next(_rids)}"
    mark = len(dash.frames)
    dash.send({"id": rid, "method": method, "params": params})
    return dash.wait_for(lambda f: f.get("id") == rid, start=mark, timeout=timeout)


def decide(dash: Any, node_id: str, approval_id: str, decision: str, by: str) -> dict:
    """decide_approval, retried while the owner has not yet written the record (it does on the bridge's next
    report, milliseconds after the question)."""
    params = {"node_id": node_id, "approval_id": approval_id, "decision": decision, "by": by}
    deadline = time.monotonic() + 10
    while True:
        reply = call(dash, "decide_approval", params)
        err = reply.get("error") or {}
        if "no open approval" not in str(err.get("message")) or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def approval_records(nats_cluster: Any, site: str) -> dict[str, dict]:
    """The site's approval records as NATS holds them (key → record)."""
    import nats

    async def read() -> dict[str, dict]:
        nc = await nats.connect(servers=list(nats_cluster.urls), connect_timeout=2)
        try:
            kv = await nc.jetstream().key_value(f"HP_APPROVALS_{site}")
            out = {}
            try:
                keys = await kv.keys()
            except nats.js.errors.NoKeysError:  # an empty bucket (any other error is the test's to show)
                return {}
            for key in keys:
                out[key] = json.loads((await kv.get(key)).value)
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def ran(pi_home: Any, name: str) -> list[str]:
    path = pi_home.cwd / name
    return path.read_text().splitlines() if path.exists() else []


def test_a_decision_through_any_hypivisor_counts_once_and_the_first_wins(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], start_pi: Any, agent_client: Any, pi_home: Any
) -> None:
    _site, (a, b, c) = start_hypivisors(nats_cluster, hypivisor_factory, 3)
    dash_a, dash_b, dash_c = (registry(agent_client, hv) for hv in (a, b, c))
    pi = start_pi(PI, mode="rpc", env={**WRITES, "HYPIVISOR_WS": a.ws_url, "HYPI_TOKEN": TOKEN})
    dash_b.wait_for(node_event("node_joined", pi.node_id), timeout=20)  # registered on A, seen on B
    link = agent_client(a.agent_url(pi.node_id), a.auth_headers)
    link.wait_for(is_type("init_state"))

    # one decision through B, a hypivisor that does not hold the agent: the tool runs once
    prompt(link, "TOOLCALL: echo one >> once.txt")
    req = ask(link)
    reply = decide(dash_b, pi.node_id, req["id"], "allow", "bob")
    assert reply.get("result", {}).get("status") == "accepted", reply
    resolved = link.wait_for(is_type("approval_resolved", id=req["id"]))
    assert (resolved["decision"], resolved["by"]) == ("allow", "dashboard")
    link.wait_for(run_done(PI))
    assert ran(pi_home, "once.txt") == ["one"]
    late = decide(dash_c, pi.node_id, req["id"], "deny", "carol")
    assert late["error"]["code"] == 1013 and "already decided (allow by bob on " in late["error"]["message"], late

    # two decisions at once, through A (the owner) and B: exactly one counts, the loser is told who won
    mark = len(link.frames)
    prompt(link, "TOOLCALL: echo two >> raced.txt")
    req = ask(link, start=mark)
    wait_until(lambda: any(n["id"] == pi.node_id and n["pending_approvals"] == 1
                           for n in call(dash_b, "list_nodes", {})["result"]["nodes"]), 10, "the approval on B")  # fmt: skip
    params = {"node_id": pi.node_id, "approval_id": req["id"]}
    marks = (len(dash_a.frames), len(dash_b.frames))
    dash_a.send({"id": "race-a", "method": "decide_approval", "params": {**params, "decision": "deny", "by": "alice"}})
    dash_b.send({"id": "race-b", "method": "decide_approval", "params": {**params, "decision": "allow", "by": "bob"}})
    got_a = dash_a.wait_for(lambda f: f.get("id") == "race-a", start=marks[0])
    got_b = dash_b.wait_for(lambda f: f.get("id") == "race-b", start=marks[1])
    winners = [g for g in (got_a, got_b) if "result" in g]
    losers = [g for g in (got_a, got_b) if "error" in g]
    assert len(winners) == 1 and len(losers) == 1, (got_a, got_b)
    won = winners[0]["result"]
    assert losers[0]["error"]["code"] == 1013
    assert f"already decided ({won['decision']} by {won['by']} on {won['hv']})" in losers[0]["error"]["message"]
    resolved = link.wait_for(is_type("approval_resolved", id=req["id"]), start=mark)
    assert resolved["decision"] == won["decision"]
    link.wait_for(run_done(PI), start=mark)
    assert ran(pi_home, "raced.txt") == (["two"] if won["decision"] == "allow" else [])
    assert len([f for f in link.frames[mark:] if f.get("type") == "approval_resolved"]) == 1


def test_a_pending_approval_survives_its_owner_and_is_decided_once_after_fail_over(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], start_pi: Any, agent_client: Any, pi_home: Any
) -> None:
    """B is not running yet when A dies: the decision through C lands while no hypivisor holds the agent (the gap),
    and B forwards it once the bridge registers there."""
    site, (a, c) = start_hypivisors(nats_cluster, hypivisor_factory, 2)
    b = hypivisor_factory(token=TOKEN, start=False, args=["--nats", ",".join(nats_cluster.urls[1:] + nats_cluster.urls[:1])],
                          env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL)})  # fmt: skip
    dash_c = registry(agent_client, c)
    # a short first backoff: the bridge retries its list often while B is down (the backoff doubles from it)
    env = {**WRITES, "HYPIVISOR_WS": f"{a.ws_url},{b.ws_url}", "HYPI_TOKEN": TOKEN, "PI_SOCKET_RECONNECT_MS": "200"}
    pi = start_pi(PI, mode="rpc", env=env)
    dash_c.wait_for(node_event("node_joined", pi.node_id), timeout=20)
    link = agent_client(a.agent_url(pi.node_id), a.auth_headers)
    link.wait_for(is_type("init_state"))
    prompt(link, "TOOLCALL: echo after >> failover.txt")
    req = ask(link)

    def pending() -> dict | None:
        recs = [r for r in approval_records(nats_cluster, site).values() if r.get("node_id") == pi.node_id]
        return recs[0] if recs and recs[0]["state"] == "pending" else None

    opened = wait_until(pending, 10, "the owner to open the approval's record")
    assert opened["tool"] == "bash" and opened["owner"].split("-")[-2] == str(a.port), opened
    a.kill()  # SIGKILL while pending: nothing cleans up
    # still pending in NATS (read again while a read comes back empty: nats-py's key listing reports an empty bucket
    # when its consumer's first answer is late on a loaded machine; nothing but a decision moves it off pending)
    wait_until(pending, 10, "the approval's record to be read as still pending after its owner died")
    reply = decide(dash_c, pi.node_id, req["id"], "allow", "carol")  # nobody holds the agent now
    assert reply.get("result", {}).get("status") == "accepted", reply
    time.sleep(0.5)
    assert ran(pi_home, "failover.txt") == []  # recorded, not yet applied: the bridge has no hypivisor
    b.start()
    t0 = time.monotonic()
    wait_until(lambda: ran(pi_home, "failover.txt") == ["after"], 20, "the tool to run after the fail-over")
    print(f"\nthe decision made in the gap ran {time.monotonic() - t0:.2f} s after B started")
    time.sleep(1.0)  # a second forward would have run it again by now
    assert ran(pi_home, "failover.txt") == ["after"]
    rec = next(r for r in approval_records(nats_cluster, site).values() if r.get("node_id") == pi.node_id)
    assert rec["state"] == "decided" and rec["decision"]["by"] == "carol" and "overrode" not in rec, rec
    via_b = agent_client(b.agent_url(pi.node_id), b.auth_headers)  # the bridge is B's now
    init = via_b.wait_for(is_type("init_state"))
    assert [r["id"] for r in init["recent_approvals"] if r["decision"] == "allow"] == [req["id"]]
    again = decide(registry(agent_client, b), pi.node_id, req["id"], "deny", "bob")
    assert again["error"]["code"] == 1013 and "allow by carol" in again["error"]["message"]


@pytest.mark.parametrize("hosting", ["service", "bridge"])
def test_decide_approval_in_one_process(
    hosting: str, hypivisor_factory: Callable[..., HypivisorProc], start_pi: Any, agent_client: Any, pi_home: Any
) -> None:
    """Both ways a pi is served: by the machine service (the default) and by its own bridge child."""
    hv = hypivisor_factory(token=TOKEN)
    dash = registry(agent_client, hv)
    env = {**WRITES, "HYPIVISOR_WS": hv.ws_url, "HYPI_TOKEN": TOKEN, "PI_SOCKET_MODE": hosting}
    pi = start_pi(PI, mode="rpc", env=env)
    assert served(pi) == (hosting == "service")
    dash.wait_for(node_event("node_joined", pi.node_id), timeout=20)
    link = agent_client(hv.agent_url(pi.node_id), hv.auth_headers)
    link.wait_for(is_type("init_state"))
    prompt(link, "TOOLCALL: echo solo >> solo.txt")
    req = ask(link)
    wait_until(lambda: any(n["id"] == pi.node_id and n["pending_approvals"] == 1
                           for n in call(dash, "list_nodes", {})["result"]["nodes"]), 10, "the pending approval")  # fmt: skip
    unknown = call(dash, "decide_approval", {"node_id": pi.node_id, "approval_id": "a-nope", "decision": "allow"})
    assert unknown["error"]["code"] == 1013 and "no open approval 'a-nope'" in unknown["error"]["message"]
    nobody = call(dash, "decide_approval", {"node_id": "ghost", "approval_id": req["id"], "decision": "allow"})
    assert nobody["error"]["code"] == 1006
    bad = call(dash, "decide_approval", {"node_id": pi.node_id, "approval_id": req["id"], "decision": "maybe"})
    assert bad["error"]["code"] == -32602
    reply = call(dash, "decide_approval", {**{"node_id": pi.node_id, "approval_id": req["id"]}, "decision": "deny",
                                           "by": "dana"})  # fmt: skip
    assert reply["result"] == {"status": "accepted", "decision": "deny", "by": "dana"}, reply
    second = call(dash, "decide_approval", {"node_id": pi.node_id, "approval_id": req["id"], "decision": "allow"})
    assert second["error"]["code"] == 1013 and "already decided (deny by dana)" in second["error"]["message"]
    resolved = link.wait_for(is_type("approval_resolved", id=req["id"]))
    assert (resolved["decision"], resolved["by"]) == ("deny", "dashboard")
    link.wait_for(run_done(PI))
    assert ran(pi_home, "solo.txt") == []


def test_a_decision_in_pis_terminal_is_written_so_a_later_one_conflicts(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], start_pi: Any, agent_client: Any, pi_home: Any
) -> None:
    site, (a, b) = start_hypivisors(nats_cluster, hypivisor_factory, 2)
    dash_b = registry(agent_client, b)
    pi = start_pi(PI, mode="tui", env={**WRITES, "HYPIVISOR_WS": a.ws_url, "HYPI_TOKEN": TOKEN})
    dash_b.wait_for(node_event("node_joined", pi.node_id), timeout=20)
    link = agent_client(a.agent_url(pi.node_id), a.auth_headers)
    link.wait_for(is_type("init_state"))
    pi.submit("TOOLCALL: echo tui >> tui.txt")
    req = ask(link)
    pi.wait_for(r"Hyper-Pi: allow bash\?", timeout=15)
    pi.keys("Enter")  # Allow, in pi's own dialog
    link.wait_for(is_type("approval_resolved", id=req["id"], by="terminal", decision="allow"))

    def written() -> dict | None:
        recs = [r for r in approval_records(nats_cluster, site).values() if r.get("node_id") == pi.node_id]
        return recs[0] if recs and recs[0]["state"] == "decided" else None

    rec = wait_until(written, 10, "the owner to write the terminal's decision")
    assert rec["decision"] == {"decision": "allow", "by": "terminal", "source": "agent"}, rec
    late = call(dash_b, "decide_approval", {"node_id": pi.node_id, "approval_id": req["id"], "decision": "deny"})
    assert late["error"]["code"] == 1013 and "already decided (allow by terminal on " in late["error"]["message"], late
    wait_until(lambda: ran(pi_home, "tui.txt") == ["tui"], 15, "the allowed command to run")
    link.wait_for(run_done(PI))
    pi.submit("/quit")  # here, without the harness's Escape first (it can eat the '/' and cost 15 s at teardown)
    wait_until(lambda: not pi.pi_pid(), 10, "pi to quit")
