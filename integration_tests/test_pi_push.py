"""Web Push end to end without the internet (specs/push.md): real pi agents, real hypivisor, a local push service.

Real pi on the fake LLM with the real shim and bridge, a real hypivisor; the devices are a local RFC 8030 push
service (``harness/push_stub.py``: it checks each request's VAPID signature and decrypts its body with the
keys a browser would hold), and a "laptop" page is a plain /ws client that reports what it shows. A scripted
sequence must reach each device as exactly the expected notifications: none for an agent someone is looking
at, none for an item that ended before its turn to be sent, none twice, and a subscription the push service
calls gone is removed.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from integration_tests.harness.pi_proc import wait_until
from integration_tests.harness.push_stub import PushStub
from integration_tests.test_pi_approvals import ask, decide
from integration_tests.test_pi_attention import added, call
from integration_tests.test_pi_link import connect, prompt, run_done
from integration_tests.test_pi_resilience import node_event, registry

pytestmark = [pytest.mark.pi]
QUIET = 1.0  # seconds in which a push that should not come would have come (a push takes milliseconds)


@pytest.fixture
def stub():
    s = PushStub()
    yield s
    s.close()


def texts(stub: PushStub, device: str) -> list[str]:
    return [f"{r.payload['title']}: {r.payload['body']}" for r in stub.to(device)]


def test_pushes_reach_each_device_exactly_as_the_rules_say(
    start_pi, pi_version, agent_client, hypivisor, stub, pi_home
):
    dash = registry(agent_client, hypivisor)
    laptop_page = registry(agent_client, hypivisor)
    config = call(dash, "push_config", device_id="phone")
    assert config["enabled"] and config["device"] is None and "approval" in config["kinds"]
    stub.expected_key = config["public_key"]
    for device in ("phone", "laptop", "old"):
        got = call(dash, "push_subscribe", device_id=device, subscription=stub.subscription(device))
        assert got["device"]["subscribed"] and got["device"]["kinds"] == config["kinds"]
    stub.status["old"] = 410  # this browser dropped its subscription: the push service says Gone

    env = {"HYPIVISOR_WS": hypivisor.ws_url, "PI_SOCKET_APPROVAL": "writes"}
    folders = [pi_home.cwd / "data-pipeline", pi_home.cwd / "todo-api"]
    for folder in folders:
        folder.mkdir()
    a, b = (start_pi(pi_version, mode="rpc", env=env, cwd=folder) for folder in folders)
    for pi in (a, b):
        dash.wait_for(node_event("node_joined", pi.node_id))
    ca, _ = connect(agent_client, a)
    cb, _ = connect(agent_client, b)
    name_a, name_b = "data-pipeline", "todo-api"  # no session names: the folder's name
    # the laptop shows agent A, focused and visible
    call(laptop_page, "set_presence", device_id="laptop", node_id=a.node_id, focused=True, visible=True)

    # 1. A finishes while someone looks at A: no push anywhere
    mark = len(dash.frames)
    prompt(ca, "hello one")
    ca.wait_for(run_done(pi_version))
    dash.wait_for(added(a.node_id, "finished"), start=mark)
    # 2. B finishes: every device (the laptop is not looking at B); "old" answers 410 and is removed
    prompt(cb, "hello two")
    cb.wait_for(run_done(pi_version))
    wait_until(lambda: len(stub.to("phone")) == 1 and len(stub.to("laptop")) == 1, 10, "B finished on both")
    assert texts(stub, "phone") == [f"{name_b} finished: Hello from fake LLM. You said: hello two"]
    wait_until(lambda: call(dash, "push_config", device_id="old")["device"] is None, 10, "the 410 device removed")

    # 3. an approval in A: the phone only (the laptop shows A), with A's URL, tag and Topic
    mark = len(ca.frames)
    prompt(ca, "TOOLCALL: touch one.txt")
    req = ask(ca, start=mark)
    wait_until(lambda: len(stub.to("phone")) == 2, 10, "A's approval on the phone")
    push = stub.to("phone")[1]
    assert texts(stub, "phone")[1] == f"{name_a} needs approval: bash `touch one.txt`"
    assert push.payload["url"] == f"#/agent/{quote(a.node_id, safe='')}" and push.payload["approval_id"] == req["id"]
    assert push.urgency == "high" and push.topic and push.topic != stub.to("phone")[0].topic
    decide(ca, req, "allow")
    ca.wait_for(run_done(pi_version), start=mark)

    # 4. a slow push service: B's approval is in flight to both devices while A's (phone only) waits its turn;
    # A's is decided before its turn comes, so it is never sent
    stub.hold()
    mark_b, mark_a = len(cb.frames), len(ca.frames)
    prompt(cb, "TOOLCALL: touch two.txt")
    req_b = ask(cb, start=mark_b)
    wait_until(lambda: stub.arrived >= 5, 10, "B's approval pushes to reach the held push service")
    prompt(ca, "TOOLCALL: touch three.txt")
    req_a = ask(ca, start=mark_a)
    item_a = dash.wait_for(lambda f: added(a.node_id, "approval")(f) and f["item"]["approval_id"] == req_a["id"])
    decide(ca, req_a, "deny")
    dash.wait_for(lambda f: f.get("event") == "attention_resolved" and f["id"] == item_a["item"]["id"])
    stub.release()
    wait_until(lambda: len(stub.to("phone")) == 3 and len(stub.to("laptop")) == 2, 10, "B's approval delivered")
    assert texts(stub, "phone")[2] == texts(stub, "laptop")[1] == f"{name_b} needs approval: bash `touch two.txt`"
    decide(cb, req_b, "deny")
    cb.wait_for(run_done(pi_version), start=mark_b)
    ca.wait_for(run_done(pi_version), start=mark_a)
    # B's run then ends (A's too, but the laptop is looking at A)
    wait_until(lambda: len(stub.to("phone")) == 4 and len(stub.to("laptop")) == 3, 10, "B finished on both")

    # 5. the laptop's page closes: its presence ends with it, so A's next run reaches the laptop too
    laptop_page.close()
    time.sleep(0.3)
    mark = len(ca.frames)
    prompt(ca, "hello again")
    ca.wait_for(run_done(pi_version), start=mark)
    wait_until(lambda: len(stub.to("laptop")) == 4, 10, "A finished on the laptop")

    time.sleep(QUIET)  # more heartbeats re-send every report: nothing more may come
    assert stub.errors == []
    finished_a = f"{name_a} finished: Hello from fake LLM. You said: hello again"
    denied_b = f"{name_b} finished: Tool result received: Denied by the user from the Hyper-Pi dashboard"
    assert texts(stub, "phone") == [
        f"{name_b} finished: Hello from fake LLM. You said: hello two",
        f"{name_a} needs approval: bash `touch one.txt`",
        f"{name_b} needs approval: bash `touch two.txt`",
        denied_b,
        finished_a,
    ]
    assert texts(stub, "laptop") == [
        f"{name_b} finished: Hello from fake LLM. You said: hello two",
        f"{name_b} needs approval: bash `touch two.txt`",
        denied_b,
        finished_a,
    ]
    assert stub.to("old") == []
    by_agent = {r.payload["node_id"]: (r.payload["tag"], r.topic) for r in stub.received}
    assert len(by_agent) == 2 and len(set(by_agent.values())) == 2  # one tag and Topic per agent
