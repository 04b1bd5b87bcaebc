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

import time

import pytest

from integration_tests.harness.pide import dashboard_url, shot, wait_until

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
    assert decisions(a) == [
        {"type": "approval_decision", "id": "a1", "decision": "deny", "reason": "not in this folder"}
    ]
    assert first.get_by_test_id("approval-deny-confirm").is_disabled()

    # the first answer anywhere wins: both pages close it, show the next, and say how the first closed
    a.push(
        {"type": "approval_resolved", "id": "a1", "decision": "deny", "by": "dashboard", "reason": "not in this folder"}
    )
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
    assert decisions(a)[1] == {
        "type": "approval_decision",
        "id": "a2",
        "decision": "allow",
        "input": {"command": "rm -rf build/tmp"},
    }
    a.push(
        {
            "type": "approval_resolved",
            "id": "a2",
            "decision": "allow",
            "by": "dashboard",
            "input": {"command": "rm -rf build/tmp"},
        }
    )
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
    a.init_state = lambda: {
        **real_init(),
        "approval_policy": "writes",
        "approval_rules": [{"tool": "bash", "prefix": "git status"}],
    }
    a.update(approval_policy="writes")
    page = page_factory(viewport=DESKTOP)
    open_agent(page, dash_hv, "n-pol")
    settings = page.get_by_test_id("approval-settings")
    # the select is disabled (and shows the default) until the agent's own state arrives over its link
    page.wait_for_selector("[data-testid='policy-select']:not([disabled])", timeout=10_000)
    wait_until(lambda: page.get_by_test_id("policy-select").input_value() == "writes", 5, what="the agent's policy")
    assert "bash: git status" in settings.inner_text()

    page.get_by_test_id("policy-select").select_option("all")
    wait_until(lambda: [f for f in a.received if f.get("type") == "set_approval_policy"], 5, what="set_approval_policy")
    assert a.received[-1] == {"type": "set_approval_policy", "policy": "all"}
    # what is shown is what the agent reports back, on the card too
    a.push({"type": "approval_policy", "policy": "all", "rules": [{"tool": "bash", "prefix": "git status"}]})
    a.update(approval_policy="all")
    page.wait_for_selector("[data-node-id='n-pol'] >> text=asks: all")
    # the card hears it through the registry, the inspector through the agent's link: two connections, either first
    wait_until(lambda: page.get_by_test_id("policy-select").input_value() == "all", 5, what="the reported policy")

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
    wait_until(
        lambda: len([f for f in a.received if f.get("type") == "set_approval_policy"]) == 3, 5, what="remove rule"
    )
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

    other = agents(dash_hv, "n-other", "/srv/projects/other", session_name="elsewhere")
    phone = page_factory(**PHONE)
    phone.goto(dashboard_url(dash_hv))
    phone.wait_for_selector("[data-node-id='n-diff'] [data-testid=waiting-badge]")
    card(phone, "n-diff").click()
    phone.wait_for_selector("[data-testid=approval-diff] .diff-add")
    # a call waiting in another agent: the back button to the roster says how many
    assert phone.get_by_test_id("waiting-elsewhere").count() == 0
    other.update(pending_approvals=1)
    phone.wait_for_selector("[data-testid=waiting-elsewhere] >> text=1")
    assert phone.get_by_role("button", name="Back to agents (1 waiting for you)").is_visible()
    for test_id in ("approval-allow", "approval-remember", "approval-deny"):
        box = phone.get_by_test_id(test_id).bounding_box()
        assert box and box["height"] >= 44 and box["y"] + box["height"] <= 844 and box["x"] + box["width"] <= 390, (
            test_id,
            box,
        )
    shot(phone, "approvals-diff-phone")
    phone.get_by_test_id("approval-allow").click()
    wait_until(lambda: decisions(a), 5, what="the phone's allow")
    assert decisions(a) == [{"type": "approval_decision", "id": "e1", "decision": "allow"}]
    a.push({"type": "approval_resolved", "id": "e1", "decision": "allow", "by": "dashboard"})
    for p in (page, phone):
        p.wait_for_selector("[data-testid=approval-card]", state="detached")


# ---------------------------------------------------------------------------
# Real pi agents: the shim's gate, the bridge, the hypivisor's proxy and roster
# ---------------------------------------------------------------------------

PI = "0.73.1"
AGENT_READY = "[data-testid=inspector] .mono >> text=bash"  # init_state arrived with pi's tools
QUESTION_MS = 30_000


@pytest.fixture
def gated_pi(start_pi):
    """``gated_pi(hv, mode)``: a real pi under ``PI_SOCKET_APPROVAL=writes``, registered with ``hv``."""

    def start(hv, mode="tui"):
        return start_pi(PI, mode=mode, env={"HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_APPROVAL": "writes"})

    return start


def send(page, text):
    page.fill("textarea[aria-label=Prompt]", text)
    page.get_by_role("button", name="Send").click()


def wait_question(page, needle, timeout=QUESTION_MS):
    page.wait_for_selector(f"[data-testid=approval-card] >> text={needle}", timeout=timeout)


@pytest.mark.pi
@pytest.mark.slow
def test_real_pi_writes_policy_deny_allow_edit_and_diff_from_two_pages(dash_hv, gated_pi, fake_llm, page_factory):
    pi = gated_pi(dash_hv)
    first = page_factory(viewport=DESKTOP)
    second = page_factory(viewport=DESKTOP)
    for p in (first, second):
        open_agent(p, dash_hv, pi.node_id, ready=AGENT_READY)
        p.wait_for_selector(f"[data-node-id='{pi.node_id}'] >> text=asks: writes")
    made = pi.cwd / "made.txt"

    # a bash call waits: in the chat and on the roster card of every page, and in pi's own terminal
    send(first, "TOOLCALL: touch made.txt")
    for p in (first, second):
        wait_question(p, "touch made.txt")
        p.wait_for_selector(f"[data-node-id='{pi.node_id}'] [data-testid=waiting-badge]", timeout=10_000)
    pi.wait_for("Hyper-Pi: allow bash", timeout=20)
    # the call's card in the conversation says it waits, rather than spinning as if it ran
    first.wait_for_selector("[data-tool=bash][data-state=waiting]")
    assert not made.exists()

    # Deny with a reason: the call never runs and the model is told why; every place closes its question
    first.get_by_test_id("approval-deny").click()
    first.get_by_test_id("approval-reason").fill("not this one")
    first.get_by_test_id("approval-deny-confirm").click()
    for p in (first, second):
        p.wait_for_selector("[data-testid=approval-card]", state="detached", timeout=10_000)
        p.wait_for_selector(
            f"[data-node-id='{pi.node_id}'] [data-testid=waiting-badge]", state="detached", timeout=10_000
        )
    second.wait_for_selector("[data-testid=approval-resolved] >> text=denied from a dashboard")
    first.wait_for_selector("text=/Tool result received: .*not this one/", timeout=QUESTION_MS)
    wait_until(lambda: "Hyper-Pi: allow bash" not in pi.screen(), 10, what="pi's own dialog to close")
    assert not made.exists()

    # Allow from the second page; the first sees its question close
    send(second, "TOOLCALL: touch made.txt")
    wait_question(first, "touch made.txt")
    wait_question(second, "touch made.txt")
    second.get_by_test_id("approval-allow").click()
    first.wait_for_selector("[data-testid=approval-card]", state="detached", timeout=10_000)
    first.wait_for_selector("[data-testid=approval-resolved] >> text=allowed from a dashboard")
    wait_until(made.exists, 15, what="made.txt to be created by the allowed call")

    # Edit and allow runs the edited command, and the model sees what ran
    send(first, "TOOLCALL: touch wrong.txt")
    wait_question(first, "touch wrong.txt")
    first.get_by_test_id("approval-edit").click()
    first.get_by_test_id("approval-command").fill("touch edited.txt")
    first.get_by_test_id("approval-edit-confirm").click()
    wait_until((pi.cwd / "edited.txt").exists, 15, what="edited.txt from the edited command")
    first.wait_for_selector("text=/edited the command before it ran/", timeout=QUESTION_MS)
    assert not (pi.cwd / "wrong.txt").exists()

    # policy "all" from the inspector: an edit inside the folder now asks, with its diff against the file
    (pi.cwd / "a.txt").write_text("keep\nx\ntail\n")
    first.get_by_test_id("policy-select").select_option("all")
    second.wait_for_selector(f"[data-node-id='{pi.node_id}'] >> text=asks: all", timeout=10_000)
    fake_llm.script(
        [
            {
                "tool_calls": [
                    {"name": "edit", "arguments": {"path": "a.txt", "edits": [{"oldText": "x", "newText": "y"}]}}
                ]
            }
        ]
    )
    send(first, "change x to y in a.txt")
    for p in (first, second):
        p.wait_for_selector("[data-testid=approval-diff] .diff-add >> text=+y", timeout=QUESTION_MS)
        assert p.locator("[data-testid=approval-diff] .diff-del").first.inner_text() == "-x"
    shot(first, "approvals-desktop")  # specs/img/approvals-desktop.png is one of these
    first.get_by_test_id("approval-allow").click()
    second.wait_for_selector("[data-testid=approval-card]", state="detached", timeout=10_000)
    wait_until(lambda: (pi.cwd / "a.txt").read_text() == "keep\ny\ntail\n", 15, what="the allowed edit")

    # the inspector lists the four decisions, newest first
    first.wait_for_function("() => document.querySelectorAll('[data-testid=recent-approvals] li').length === 4")
    recent = first.locator("[data-testid=recent-approvals] li")
    assert "a.txt" in recent.nth(0).inner_text()
    assert "touch edited.txt" in recent.nth(1).inner_text()
    assert "not this one" in recent.nth(3).inner_text()


@pytest.mark.pi
@pytest.mark.slow
def test_real_pi_phone_decides_from_the_roster_badge(dash_hv, gated_pi, page_factory):
    """On a 390x844 phone, with pi in RPC mode whose client never answers pi's own dialog."""
    pi = gated_pi(dash_hv, mode="rpc")
    phone = page_factory(**PHONE)
    open_agent(phone, dash_hv, pi.node_id, ready=AGENT_READY)
    send(phone, "TOOLCALL: touch phone.txt")
    wait_question(phone, "touch phone.txt")
    shot(phone, "approvals-phone")  # specs/img/approvals-phone.png is one of these

    # back on the roster, the card says the agent waits for you
    phone.get_by_role("button", name="Back to agents").click()
    badge = phone.locator(f"[data-node-id='{pi.node_id}'] [data-testid=waiting-badge]")
    badge.wait_for(timeout=10_000)
    shot(phone, "approvals-phone-roster")
    card(phone, pi.node_id).click()
    wait_question(phone, "touch phone.txt")
    for test_id in ("approval-allow", "approval-remember", "approval-edit", "approval-deny"):
        box = phone.get_by_test_id(test_id).bounding_box()
        assert box and box["height"] >= 44 and box["y"] + box["height"] <= 844 and box["x"] + box["width"] <= 390, (
            test_id,
            box,
        )
    phone.get_by_test_id("approval-allow").click()
    phone.wait_for_selector("[data-testid=approval-card]", state="detached", timeout=10_000)
    wait_until((pi.cwd / "phone.txt").exists, 15, what="phone.txt from the phone's allow")
    # pi's RPC client was asked too (and never answered): the dashboard's answer decided
    assert any(e.get("type") == "extension_ui_request" for e in pi.events), "pi's own dialog was not opened"

    # every other decision from the phone too: Deny with a reason, Edit and allow
    send(phone, "TOOLCALL: touch denied.txt")
    wait_question(phone, "touch denied.txt")
    phone.get_by_test_id("approval-deny").click()
    phone.get_by_test_id("approval-reason").fill("no new files")
    phone.get_by_test_id("approval-deny-confirm").click()
    phone.wait_for_selector("text=/Tool result received: .*no new files/", timeout=QUESTION_MS)
    send(phone, "TOOLCALL: touch typo.txt")
    wait_question(phone, "touch typo.txt")
    phone.get_by_test_id("approval-edit").click()
    phone.get_by_test_id("approval-command").fill("touch fixed.txt")
    phone.get_by_test_id("approval-edit-confirm").click()
    wait_until((pi.cwd / "fixed.txt").exists, 15, what="fixed.txt from the phone's edited command")
    assert not (pi.cwd / "denied.txt").exists() and not (pi.cwd / "typo.txt").exists()

    # and the policy, from the inspector drawer
    phone.get_by_role("button", name="Show inspector").click()
    phone.get_by_test_id("policy-select").select_option("off")
    phone.wait_for_selector("[data-testid=approval-settings] >> text=never asks")
    phone.get_by_role("button", name="Close inspector").click()
    send(phone, "TOOLCALL: touch unasked.txt")
    wait_until((pi.cwd / "unasked.txt").exists, 30, what="a bash call under policy off, never asked")
    assert question(phone).count() == 0


@pytest.mark.pi
@pytest.mark.slow
def test_real_pi_terminal_answer_closes_the_dashboard_question_and_remember_adds_a_rule(
    dash_hv, gated_pi, page_factory
):
    pi = gated_pi(dash_hv)
    page = page_factory(viewport=DESKTOP)
    open_agent(page, dash_hv, pi.node_id, ready=AGENT_READY)

    # answered in pi's own terminal first: the dashboard closes its question and says where it was decided
    send(page, "TOOLCALL: touch from-terminal.txt")
    wait_question(page, "touch from-terminal.txt")
    pi.wait_for("Hyper-Pi: allow bash", timeout=20)
    pi.keys("Enter")  # the dialog's first choice: Allow
    page.wait_for_selector("[data-testid=approval-card]", state="detached", timeout=10_000)
    page.wait_for_selector("[data-testid=approval-resolved] >> text=allowed in pi's terminal")
    wait_until((pi.cwd / "from-terminal.txt").exists, 15, what="the call the terminal allowed")
    page.wait_for_selector(f"[data-node-id='{pi.node_id}'] [data-testid=waiting-badge]", state="detached")

    # Allow and don't ask again: the rule shows in the inspector, and the next such command is not asked
    send(page, "TOOLCALL: ls -a")
    wait_question(page, "ls -a")
    page.get_by_test_id("approval-remember").click()
    page.wait_for_selector("[data-testid=rule-list] >> text=bash: ls")
    send(page, "TOOLCALL: ls -l")
    page.wait_for_selector("[data-tool=bash][data-state=success] >> text=ls -l", timeout=QUESTION_MS)
    assert question(page).count() == 0
    page.wait_for_selector("[data-testid=recent-approvals] li >> text=by an allow rule")
