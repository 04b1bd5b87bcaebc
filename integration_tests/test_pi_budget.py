"""Budgets with real pi on the fake LLM (specs/budgets.md): a tiny budget is crossed mid-run, the run is aborted
(its partial turn kept), the next prompt is held with a clear message, an override lets one more through; the
inbox items appear once and end with their condition; spend survives a hypivisor SIGKILL without counting twice.

The fake model costs $1/M input and $2/M output tokens (integration_tests/harness/models.json) and reports about
a token per 4 characters: pi's system prompt alone makes a first call of a few hundred tokens."""

from __future__ import annotations

import time

import pytest

from integration_tests.harness.pi_proc import wait_until
from integration_tests.test_pi_attention import call, items_of, resolved
from integration_tests.test_pi_link import assistant_end, connect, is_type, prompt, run_done
from integration_tests.test_pi_resilience import node_event, registry

pytestmark = [pytest.mark.pi]


def budget_item(node_id: str, key_words: str):
    return lambda f: (
        f.get("event") == "attention_added"
        and f["item"]["node_id"] == node_id
        and f["item"]["kind"] == "budget"
        and key_words in f["item"]["summary"]
    )


def test_a_tiny_budget_aborts_the_run_holds_the_next_prompt_and_override_lets_one_through(
    start_pi, pi_version, agent_client, hypivisor_factory, fake_llm
):
    hv = hypivisor_factory(args=["--budget-agent-tokens", "50"])  # the default for every agent: tiny
    dash = registry(agent_client, hv)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hv.ws_url})
    dash.wait_for(node_event("node_joined", pi.node_id))
    c, _ = connect(agent_client, pi)
    fake_llm.reset()
    # the first call (a tool call) already passes 50 tokens: the run is aborted while its command runs
    fake_llm.script([{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 4; echo done"}}]},
                     {"text": "never asked"}])  # fmt: skip
    prompt(c, "spend it")
    c.wait_for(run_done(pi_version), timeout=30)
    assert len(fake_llm.requests()) == 1, "the run went on past the budget"
    ends = [f["message"] for f in c.frames if assistant_end(f)]
    assert ends and ends[0]["content"][-1]["type"] == "toolCall"  # the partial turn is kept
    assert ends[-1]["stopReason"] == "aborted" or any(
        f.get("type") == "tool_execution_end" and f.get("isError") for f in c.frames
    )
    held = dash.wait_for(budget_item(pi.node_id, "reached"))["item"]
    assert held["summary"].startswith("this agent's budget of 50 tokens reached")
    dash.wait_for(node_event("node_updated", pi.node_id, budget_level="held"))

    # the next prompt is held, with a clear message; nothing reaches pi
    mark = len(c.frames)
    pid = prompt(c, "one more")
    err = c.wait_for(lambda f: f.get("type") == "error" and f.get("id") == pid, start=mark)
    assert err["code"] == 1015
    assert err["message"] == "this agent's budget of 50 tokens reached: raise it or override once"
    time.sleep(0.5)
    assert len(fake_llm.requests()) == 1

    # override once: the same prompt goes through and the run finishes; the held item ends
    out = call(dash, "override_budget", node_id=pi.node_id)
    assert out["status"] == "overridden"
    dash.wait_for(resolved(held["id"], "cause"))
    mark = len(c.frames)
    pid = prompt(c, "one more")
    c.wait_for(is_type("ack", id=pid), start=mark)
    c.wait_for(run_done(pi_version), start=mark, timeout=30)
    assert [f for f in c.frames[mark:] if assistant_end(f)][-1]["message"]["stopReason"] == "stop"
    dash.wait_for(node_event("node_updated", pi.node_id, budget_level="over"))
    assert [i["kind"] for i in items_of(dash, pi.node_id)].count("budget") == 0
    # raised above the spend: no longer over; raised only a little and reached again: held anew
    spent = next(r for r in call(dash, "get_spend", group_by="agent", days=1)["rows"] if r["key"] == pi.node_id)
    assert spent["tokens"] > 50 and spent["cost"] > 0
    call(dash, "set_budget", scope="agent", key=pi.node_id, tokens=spent["tokens"] * 100)
    dash.wait_for(lambda f: f.get("event") == "budget_changed")
    wait_until(lambda: not call(dash, "list_budgets")["states"].get(pi.node_id), 10, "the state to clear")
    assert len([f for f in dash.frames if budget_item(pi.node_id, "reached")(f)]) == 1  # each item once


def test_spend_adds_up_and_survives_a_hypivisor_sigkill_without_counting_twice(
    start_pi, pi_version, agent_client, hypivisor_factory, fake_llm
):
    hv = hypivisor_factory()
    dash = registry(agent_client, hv)
    env = {"HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_RECONNECT_MS": "200"}
    first = start_pi(pi_version, mode="rpc", env=env)
    second = start_pi(pi_version, mode="rpc", env=env)
    for pi in (first, second):
        dash.wait_for(node_event("node_joined", pi.node_id))
        c, _ = connect(agent_client, pi)
        prompt(c, f"hello {pi.node_id}")
        c.wait_for(run_done(pi_version), timeout=30)

    def totals(client) -> dict:
        return call(client, "get_totals")

    wait_until(lambda: len([r for r in call(dash, "get_spend", group_by="agent")["rows"] if r["cost"] > 0]) == 2,
               10, "both agents' spend")  # fmt: skip
    before = totals(dash)
    assert before["today"] == before["all_time"] and before["all_time"]["tokens"] > 0
    assert [m["key"] for m in before["by_machine"]] and before["by_folder"]

    hv.kill()
    hv.start()
    fresh = registry(agent_client, hv)
    wait_until(lambda: {n["id"] for n in call(fresh, "list_nodes")["nodes"]} >= {first.node_id, second.node_id},
               20, "both bridges to register again")  # fmt: skip
    time.sleep(1.0)  # their counters came with the register: nothing may be added twice
    assert totals(fresh) == before
    c, _ = connect(agent_client, first)
    prompt(c, "and more")
    c.wait_for(run_done(pi_version), timeout=30)
    wait_until(lambda: totals(fresh)["all_time"]["tokens"] > before["all_time"]["tokens"], 10, "the new spend")
    days = call(fresh, "get_spend", group_by="day", days=7)["rows"]
    assert len(days) == 7 and days[-1]["tokens"] == totals(fresh)["today"]["tokens"]
