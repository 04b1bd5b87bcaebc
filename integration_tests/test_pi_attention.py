"""The attention inbox with real pi agents (specs/attention.md): one item per thing that needs a person.

Real pi on the fake LLM, the real shim and bridge, a real hypivisor (killed with SIGKILL and restarted on the
same state dir); two dashboards are plain /ws clients. A finished run, an error run, an approval and a pi
dialog each make exactly one item that both dashboards see; resolving it anywhere ends it everywhere.
"""

from __future__ import annotations

import itertools
import time

import pytest

from integration_tests.harness.pi_proc import wait_until
from integration_tests.test_pi_approvals import ask, decide
from integration_tests.test_pi_link import connect, prompt, run_done
from integration_tests.test_pi_resilience import node_event, registry

pytestmark = [pytest.mark.pi]
_ids = itertools.count(1)


def call(dash, method: str, **params) -> dict:
    rid = f"att-{next(_ids)}"
    mark = len(dash.frames)
    dash.send({"id": rid, "method": method, "params": params})
    reply = dash.wait_for(lambda f: f.get("id") == rid and ("result" in f or "error" in f), start=mark)
    assert "result" in reply, reply
    return reply["result"]


def added(node_id: str, kind: str):
    return lambda f: (
        f.get("event") == "attention_added" and f["item"]["node_id"] == node_id and f["item"]["kind"] == kind
    )


def resolved(item_id: str, by: str | None = None):
    return lambda f: f.get("event") == "attention_resolved" and f["id"] == item_id and (by is None or f["by"] == by)


def items_of(dash, node_id: str) -> list[dict]:
    return [i for i in call(dash, "list_attention")["items"] if i["node_id"] == node_id]


@pytest.mark.pi_smoke
def test_finished_error_and_approval_each_make_one_item_that_every_dashboard_sees(
    start_pi, pi_version, agent_client, hypivisor, fake_llm
):
    a, b = registry(agent_client, hypivisor), registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url, "PI_SOCKET_APPROVAL": "writes"})
    a.wait_for(node_event("node_joined", pi.node_id))
    c, _ = connect(agent_client, pi)

    # a finished run: one item, plain summary, unread count on the card
    prompt(c, "hello **inbox**")
    c.wait_for(run_done(pi_version))
    item = a.wait_for(added(pi.node_id, "finished"))["item"]
    assert b.wait_for(added(pi.node_id, "finished"))["item"]["id"] == item["id"]
    assert item["summary"] == "Hello from fake LLM. You said: hello inbox"
    assert item["cwd"] == str(pi.cwd) and item["machine"]
    a.wait_for(node_event("node_updated", pi.node_id, unread=1))
    time.sleep(1.5)  # more heartbeats re-send the same report: still one item
    assert [i["id"] for i in items_of(b, pi.node_id)] == [item["id"]]
    # read on one dashboard: gone on the other, unread 0 everywhere
    call(a, "mark_read", node_id=pi.node_id)
    b.wait_for(resolved(item["id"], "read"))
    b.wait_for(lambda f: f.get("event") == "unread_changed" and f["node_id"] == pi.node_id and f["unread"] == 0)
    assert items_of(b, pi.node_id) == []

    # an error run (the model's API fails): one error item with the error in plain words
    prompt(c, "FAIL500 please")
    err = a.wait_for(added(pi.node_id, "error"), timeout=30)["item"]
    assert err["summary"], err
    call(b, "dismiss_attention", id=err["id"])
    a.wait_for(resolved(err["id"], "dismissed"))

    # an approval: one item with the approval id; deciding it ends the item everywhere
    mark_a = len(a.frames)
    prompt(c, "TOOLCALL: touch inbox.txt")
    req = ask(c)
    ap = a.wait_for(added(pi.node_id, "approval"), start=mark_a)["item"]
    assert ap["approval_id"] == req["id"] and ap["tool_name"] == "bash"
    assert ap["summary"] == "bash `touch inbox.txt`"
    decide(c, req, "allow")
    b.wait_for(resolved(ap["id"], "cause"))
    c.wait_for(run_done(pi_version), start=len(c.frames) - 1)
    kinds = [i["kind"] for i in items_of(a, pi.node_id)]
    assert kinds.count("approval") == 0 and kinds.count("finished") <= 1


DIALOG_EXTENSION = """
export default function (pi) {
  pi.on("input", async (event, ctx) => {
    if (event.text !== "ASK ME") return { action: "continue" };
    await ctx.ui.select("Pick a **branch**", ["main", "dev"]);
    return { action: "handled" };
  });
}
"""


@pytest.mark.slow
def test_a_pi_dialog_is_a_question_until_it_closes(start_pi, pi_version, agent_client, hypivisor, tmp_path):
    if pi_version.startswith("0."):
        pytest.skip("pi 0.7x has no ui_prompt_start/ui_prompt_end events")
    ext = tmp_path / "ask.ts"
    ext.write_text(DIALOG_EXTENSION)
    dash = registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="tui", env={"HYPIVISOR_WS": hypivisor.ws_url}, args=("-e", str(ext)))
    dash.wait_for(node_event("node_joined", pi.node_id))
    pi.submit("ASK ME")
    pi.wait_for(r"Pick a", timeout=15)
    q = dash.wait_for(added(pi.node_id, "question"))["item"]
    assert q["summary"] == "Pick a branch"
    pi.keys("Enter")
    dash.wait_for(resolved(q["id"], "cause"))
    assert [i for i in items_of(dash, pi.node_id) if i["kind"] == "question"] == []


@pytest.mark.slow
def test_a_hypivisor_restart_keeps_open_items_and_read_markers(start_pi, pi_version, agent_client, hypivisor_factory):
    hv = hypivisor_factory()
    dash = registry(agent_client, hv)
    env = {"HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_APPROVAL": "writes", "PI_SOCKET_RECONNECT_MS": "200"}
    first = start_pi(pi_version, mode="rpc", env=env)
    second = start_pi(pi_version, mode="rpc", env=env)
    for pi in (first, second):
        dash.wait_for(node_event("node_joined", pi.node_id))
    c1, _ = connect(agent_client, first)
    c2, _ = connect(agent_client, second)
    prompt(c1, "hello one")
    prompt(c2, "hello two")
    c1.wait_for(run_done(pi_version))
    c2.wait_for(run_done(pi_version))
    one = dash.wait_for(added(first.node_id, "finished"))["item"]
    two = dash.wait_for(added(second.node_id, "finished"))["item"]
    call(dash, "mark_read", node_id=second.node_id)  # read: its marker must survive too
    dash.wait_for(resolved(two["id"], "read"))
    prompt(c1, "TOOLCALL: touch later.txt")
    req = ask(c1)
    ap = dash.wait_for(added(first.node_id, "approval"))["item"]

    hv.kill()
    hv.start()
    fresh = registry(agent_client, hv)
    wait_until(
        lambda: {n["id"] for n in call(fresh, "list_nodes")["nodes"]} >= {first.node_id, second.node_id},
        20,
        "both bridges to register again",
    )
    time.sleep(1.0)  # their reports arrive with the register: nothing may be doubled
    listed = call(fresh, "list_attention")
    mine = sorted((i["id"], i["kind"]) for i in listed["items"] if i["node_id"] in (first.node_id, second.node_id))
    assert mine == sorted([(one["id"], "finished"), (ap["id"], "approval")])
    assert listed["unread"].get(first.node_id) == 1 and second.node_id not in listed["unread"]
    assert not [f for f in fresh.frames if f.get("event") == "attention_added"], "an item was made twice"
    decide(c1, req, "deny")
    fresh.wait_for(resolved(ap["id"], "cause"))
