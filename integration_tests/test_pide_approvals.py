"""Pi-DE's approval gates in Chromium (specs/approvals.md).

Two halves:
* a node registered over the hypivisor's real ``/ws`` with a scripted agent link (RegisteredAgent) shows the
  page's side of the wire exactly: what the page sends for each button, and what it shows for each frame,
  on two pages at once and on a phone;
* real pi agents (fake LLM, the shim's real gate, the real bridge) under ``PI_SOCKET_APPROVAL=writes``: a
  bash call waits for the dashboard, Deny / Allow / Edit and allow decide what runs, an edit's diff renders,
  a second page sees the same question and sees it close, and a phone decides.
"""

from __future__ import annotations

import json
import time

import pytest

from integration_tests.harness.pide import ARTIFACTS, dashboard_url, shot, wait_until

pytestmark = [pytest.mark.browser]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


def card(page, node_id):
    return page.locator(f"[data-node-id='{node_id}']")


def question(page):
    return page.locator("[data-testid=approval-card]")


def open_agent(page, hv, node_id, ready="[data-testid=inspector]"):
    page.goto(dashboard_url(hv))
    card(page, node_id).click(timeout=20_000)
    page.wait_for_selector(ready)


def bash_request(approval_id: str, command: str, queued_at: float | None = None) -> dict:
    return {
        "type": "approval_request",
        "id": approval_id,
        "tool_call_id": f"call-{approval_id}",
        "tool_name": "bash",
        "input": {"command": command},
        "policy": "writes",
        "queued_at": queued_at if queued_at is not None else time.time(),
        "preview": {"kind": "command", "command": command},
        "why": "bash",
    }


def decisions(agent) -> list[dict]:
    return [f for f in agent.received if f.get("type") == "approval_decision"]


# ---------------------------------------------------------------------------
# The page's side of the wire, against a scripted agent link
# ---------------------------------------------------------------------------


def test_question_on_two_pages_each_button_sends_its_decision_and_closes_everywhere(dash_hv, agents, page_factory):
    a = agents(dash_hv, "n-gate", "/srv/projects/api", session_name="gate me")
    a.update(approval_policy="writes")
    first = page_factory(viewport=DESKTOP)
    second = page_factory(viewport=DESKTOP)
    for p in (first, second):
        open_agent(p, dash_hv, "n-gate")

    # two calls queue, in order; both pages show the first in full and the queue; the roster says so
    a.push(bash_request("a1", "touch made.txt", time.time() - 5), bash_request("a2", "rm -rf build"))
    a.update(pending_approvals=2)
    for p in (first, second):
        p.wait_for_selector("[data-testid=approval-card][data-approval-id=a1]")
        assert p.locator("[data-testid=approval-command-text]").inner_text() == "touch made.txt"
        assert p.locator("[data-testid=approval-queue]").inner_text() == "1 of 2 waiting"
        assert "rm -rf build" in p.locator("[data-testid=approval-next]").inner_text()
        assert "gate me" in question(p).inner_text() and "/srv/projects/api" in question(p).inner_text()
        p.wait_for_selector("[data-node-id='n-gate'] [data-testid=waiting-badge] >> text=waiting for you · 2")
        assert "asks: writes" in card(p, "n-gate").inner_text()
    first.wait_for_function(
        "() => /^waiting ([5-9]|1\\d) s$/.test(document.querySelector('[data-testid=approval-waited]')?.innerText)"
    )

    # Deny with a reason, from the first page: sent once, its buttons wait for the outcome
    first.get_by_test_id("approval-deny").click()
    first.get_by_test_id("approval-reason").fill("not in this folder")
    first.get_by_test_id("approval-deny-confirm").click()
    wait_until(lambda: decisions(a), 5, what="the deny decision")
    assert decisions(a) == [{"type": "approval_decision", "id": "a1", "decision": "deny", "reason": "not in this folder"}]
    assert first.get_by_test_id("approval-deny-confirm").is_disabled()

    # the first answer anywhere wins: both pages close it, show the next, and say how the first closed
    a.push({"type": "approval_resolved", "id": "a1", "decision": "deny", "by": "dashboard", "reason": "not in this folder"})
    a.update(pending_approvals=1)
    for p in (first, second):
        p.wait_for_selector("[data-testid=approval-card][data-approval-id=a2]")
        assert p.locator("[data-testid=approval-queue]").inner_text() == "1 of 1 waiting"
        p.wait_for_selector("[data-node-id='n-gate'] [data-testid=waiting-badge] >> text=/^waiting for you$/")

    # Edit and allow on the second page sends the edited command
    second.get_by_test_id("approval-edit").click()
    box = second.get_by_test_id("approval-command")
    assert box.input_value() == "rm -rf build"
    box.fill("rm -rf build/tmp")
    second.get_by_test_id("approval-edit-confirm").click()
    wait_until(lambda: len(decisions(a)) == 2, 5, what="the edited allow")
    assert decisions(a)[1] == {"type": "approval_decision", "id": "a2", "decision": "allow", "input": {"command": "rm -rf build/tmp"}}
    a.push({"type": "approval_resolved", "id": "a2", "decision": "allow", "by": "dashboard", "input": {"command": "rm -rf build/tmp"}})
    a.update(pending_approvals=0)
    for p in (first, second):
        p.wait_for_selector("[data-testid=approval-card]", state="detached")
        p.wait_for_selector("[data-testid=approval-resolved] >> text=allowed from a dashboard")
        p.wait_for_selector("[data-node-id='n-gate'] [data-testid=waiting-badge]", state="detached")
    # the inspector lists the decisions, newest first
    recent = first.locator("[data-testid=recent-approvals] li")
    assert recent.count() == 2
    assert "rm -rf build/tmp" in recent.nth(0).inner_text() and "allowed" in recent.nth(0).inner_text()
    assert "touch made.txt" in recent.nth(1).inner_text() and "not in this folder" in recent.nth(1).inner_text()

    # a late answer: the question closed elsewhere before ours arrived (CONFLICT), said plainly
    second.close()
    wait_until(lambda: len(a._clients) == 1, 5, what="the second page's link to close")
    a.push(bash_request("a3", "ls -la"))
    question(first).wait_for()
    first.get_by_test_id("approval-remember").click()
    wait_until(lambda: len(decisions(a)) == 3, 5, what="the remember decision")
    assert decisions(a)[2] == {"type": "approval_decision", "id": "a3", "decision": "allow", "remember": True}
    a.push(
        {"type": "approval_resolved", "id": "a3", "decision": "allow", "by": "terminal"},
        {"type": "error", "id": "a3", "code": 1013, "message": "approval a3 was already decided"},
    )
    first.wait_for_selector("[role=alert] >> text=Already decided: allowed in pi's terminal. Your answer was not used.")
    assert question(first).count() == 0


def test_inspector_changes_policy_and_rules(dash_hv, agents, page_factory):
    a = agents(dash_hv, "n-pol", "/srv/projects/web", session_name="policies")
    real_init = a.init_state
    a.init_state = lambda: {**real_init(), "approval_policy": "writes", "approval_rules": [{"tool": "bash", "prefix": "git status"}]}
    a.update(approval_policy="writes")
    page = page_factory(viewport=DESKTOP)
    open_agent(page, dash_hv, "n-pol")
    settings = page.get_by_test_id("approval-settings")
    assert page.get_by_test_id("policy-select").input_value() == "writes"
    assert "bash: git status" in settings.inner_text()

    page.get_by_test_id("policy-select").select_option("all")
    wait_until(lambda: [f for f in a.received if f.get("type") == "set_approval_policy"], 5, what="set_approval_policy")
    assert a.received[-1] == {"type": "set_approval_policy", "policy": "all"}
    # what is shown is what the agent reports back, on the card too
    a.push({"type": "approval_policy", "policy": "all", "rules": [{"tool": "bash", "prefix": "git status"}]})
    a.update(approval_policy="all")
    page.wait_for_selector("[data-node-id='n-pol'] >> text=asks: all")
    assert page.get_by_test_id("policy-select").input_value() == "all"

    page.get_by_label("Rule tool").fill("bash")
    page.get_by_label("Rule command prefix").fill("npm test")
    page.get_by_role("button", name="Add rule").click()
    wait_until(lambda: len([f for f in a.received if f.get("type") == "set_approval_policy"]) == 2, 5, what="add rule")
    assert a.received[-1] == {
        "type": "set_approval_policy",
        "policy": "all",
        "rules": [{"tool": "bash", "prefix": "git status"}, {"tool": "bash", "prefix": "npm test"}],
    }
    page.get_by_role("button", name="Remove rule bash: git status").click()
    wait_until(lambda: len([f for f in a.received if f.get("type") == "set_approval_policy"]) == 3, 5, what="remove rule")
    assert a.received[-1] == {"type": "set_approval_policy", "policy": "all", "rules": []}


def test_edit_diff_renders_and_a_phone_decides(dash_hv, agents, page_factory):
    a = agents(dash_hv, "n-diff", "/srv/projects/site", session_name="docs edit")
    edit = {
        **bash_request("e1", ""),
        "tool_name": "edit",
        "input": {"path": "/srv/shared/a.txt", "edits": [{"oldText": "x", "newText": "y"}]},
        "why": "edit outside the folder",
        "preview": {
            "kind": "diff",
            "path": "/srv/shared/a.txt",
            "diff": "--- a.txt\n+++ a.txt\n@@ -1,3 +1,3 @@\n keep\n-x\n+y\n tail\n",
        },
    }
    real_init = a.init_state
    a.init_state = lambda: {**real_init(), "pending_approvals": [edit], "approval_policy": "writes"}
    a.update(approval_policy="writes", pending_approvals=1)

    page = page_factory(viewport=DESKTOP)
    open_agent(page, dash_hv, "n-diff", ready="[data-testid=approval-diff]")
    assert page.locator("[data-testid=approval-diff] .diff-del").inner_text() == "-x"
    assert page.locator("[data-testid=approval-diff] .diff-add").inner_text() == "+y"
    assert page.get_by_test_id("approval-edit").count() == 0  # only bash commands can be edited
    shot(page, "approvals-diff-desktop")

    phone = page_factory(**PHONE)
    phone.goto(dashboard_url(dash_hv))
    phone.wait_for_selector("[data-node-id='n-diff'] [data-testid=waiting-badge]")
    card(phone, "n-diff").click()
    phone.wait_for_selector("[data-testid=approval-diff] .diff-add")
    for test_id in ("approval-allow", "approval-remember", "approval-deny"):
        box = phone.get_by_test_id(test_id).bounding_box()
        assert box and box["height"] >= 44 and box["y"] + box["height"] <= 844 and box["x"] + box["width"] <= 390, (test_id, box)
    shot(phone, "approvals-diff-phone")
    phone.get_by_test_id("approval-allow").click()
    wait_until(lambda: decisions(a), 5, what="the phone's allow")
    assert decisions(a) == [{"type": "approval_decision", "id": "e1", "decision": "allow"}]
    a.push({"type": "approval_resolved", "id": "e1", "decision": "allow", "by": "dashboard"})
    for p in (page, phone):
        p.wait_for_selector("[data-testid=approval-card]", state="detached")
