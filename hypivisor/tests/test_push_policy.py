"""Web Push policy (pure): who gets which notification for an inbox item (specs/push.md §2)."""

from __future__ import annotations

from hypivisor.push.policy import KINDS, Device, Presence, PushPolicy, agent_name, payload, topic
from pi_socket.protocol import AttentionItem

PHONE, LAPTOP = Device("phone"), Device("laptop")


def item(
    kind: str = "approval", node: str = "n1", item_id: str = "att-1", summary: str = "bash `rm -rf build`", **kw
) -> AttentionItem:
    fields = {"session_name": "data-pipeline", "cwd": "/w/data-pipeline", **kw}
    return AttentionItem(id=item_id, node_id=node, kind=kind, summary=summary, created_at=1.0, **fields)  # type: ignore[arg-type]


def looking(node: str | None = "n1", focused: bool = True, visible: bool = True) -> list[Presence]:
    return [Presence(node, focused, visible)]


def to(pushes) -> list[str]:
    return sorted(p.device_id for p in pushes)


def test_text_is_plain_name_verb_summary():
    p = payload(item())
    assert (p["title"], p["body"]) == ("data-pipeline needs approval", "bash `rm -rf build`")
    p = payload(item("finished", summary="Tests pass (3 files changed)", session_name=None, cwd="/src/todo-api/"))
    assert f"{p['title']}: {p['body']}" == "todo-api finished: Tests pass (3 files changed)"
    p = payload(item("error", summary="429 rate limited", session_name="blog-engine"))
    assert f"{p['title']}: {p['body']}" == "blog-engine failed: 429 rate limited"
    assert agent_name(item(session_name=None, cwd=None)) == "n1"
    assert payload(item(node="host:1/x"))["url"] == "#/agent/host%3A1%2Fx"  # opens that agent's hash route
    assert payload(item(approval_id="a1"))["approval_id"] == "a1"


def test_tag_and_topic_name_the_agent_not_the_item():
    a, b = payload(item(item_id="att-1")), payload(item("finished", item_id="att-2"))
    assert a["tag"] == b["tag"] != payload(item(node="n2"))["tag"]
    t = topic("n1" * 200)
    assert len(t) <= 32 and all(c.isalnum() or c in "-_" for c in t)  # RFC 8030 §5.4


def test_approval_question_error_notify_every_device():
    for kind in ("approval", "question", "error"):
        pushes = PushPolicy().added(item(kind), [PHONE, LAPTOP], {})
        assert to(pushes) == ["laptop", "phone"]
        assert all(p.urgency == "high" for p in pushes)


def test_not_to_the_device_looking_at_that_agent_but_to_the_others():
    pushes = PushPolicy().added(item("approval"), [PHONE, LAPTOP], {"laptop": looking("n1")})
    assert to(pushes) == ["phone"]


def test_visible_but_unfocused_or_another_agent_is_not_looking():
    for pres in (looking("n1", focused=False), looking("n1", visible=False), looking("n2"), looking(None)):
        assert to(PushPolicy().added(item(), [LAPTOP], {"laptop": pres})) == ["laptop"]


def test_any_page_of_a_device_looking_counts():
    pres = {"laptop": [Presence(None, False, True), Presence("n1", True, True)]}
    assert PushPolicy().added(item(), [LAPTOP], pres) == []


def test_finished_not_at_all_while_someone_looks_at_that_agent():
    assert PushPolicy().added(item("finished"), [PHONE, LAPTOP], {"laptop": looking("n1")}) == []
    assert PushPolicy().added(item("exited"), [PHONE, LAPTOP], {"laptop": looking("n1")}) == []
    pushes = PushPolicy().added(item("finished"), [PHONE, LAPTOP], {"laptop": looking("n2")})
    assert to(pushes) == ["laptop", "phone"] and pushes[0].urgency == "normal"


def test_stalled_and_budget_notify_once_until_someone_looks():
    for kind in ("stalled", "budget"):
        policy = PushPolicy()
        assert to(policy.added(item(kind, item_id="s1"), [PHONE], {})) == ["phone"]
        policy.resolved("s1")
        assert policy.added(item(kind, item_id="s2"), [PHONE], {}) == []  # again: not again
        assert to(policy.added(item(kind, node="n2", item_id="s3"), [PHONE], {})) == ["phone"]  # another agent
        policy.presence_changed({"laptop": looking("n1")})  # a person looked at n1: armed again
        assert to(policy.added(item(kind, item_id="s4"), [PHONE], {})) == ["phone"]


def test_one_push_per_item_per_device():
    policy = PushPolicy()
    assert to(policy.added(item(), [PHONE], {})) == ["phone"]
    assert policy.added(item(), [PHONE], {}) == []  # the same item again (a re-report)
    assert to(policy.added(item(), [PHONE, LAPTOP], {})) == ["laptop"]  # a device that subscribed since


def test_kind_switches_and_muted_agents():
    quiet = Device("phone", kinds=frozenset(KINDS) - {"finished"}, muted=frozenset({"n2"}))
    policy = PushPolicy()
    assert policy.added(item("finished"), [quiet], {}) == []
    assert policy.added(item("approval", node="n2", item_id="x"), [quiet], {}) == []
    assert to(policy.added(item("approval", item_id="y"), [quiet], {})) == ["phone"]


def test_none_for_an_item_that_ended_before_its_send():
    policy = PushPolicy()
    [push] = policy.added(item(), [PHONE], {})
    assert policy.still_wanted(push, {})
    assert not policy.still_wanted(push, {"phone": looking("n1")})  # the device opened that agent meanwhile
    policy.resolved("att-1")
    assert not policy.still_wanted(push, {})
