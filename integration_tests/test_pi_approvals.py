"""Approval gates on real pi (specs/approvals.md): a tool call the policy asks about runs only after a yes.

Real pi on the fake LLM (which calls bash with the command after ``TOOLCALL:``), the real shim and bridge; the
dashboard is an agent-link client, the terminal is pi's TUI in tmux. What is checked is what a user relies on:
the file a denied command would create does not exist, the model is told why, the first answer wins, and no
fault (a dead bridge, nobody there, Esc, a late answer) makes a call run without a yes or hangs pi.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from integration_tests.harness.pi_proc import pid_alive, wait_until
from integration_tests.test_pi_link import assistant_end, connect, is_type, prompt, run_done, text_of
from integration_tests.test_pi_resilience import node_event, registry

pytestmark = [pytest.mark.pi]

WRITES = {"PI_SOCKET_APPROVAL": "writes"}


def ask(c, start: int = 0, timeout: float = 20) -> dict:
    return c.wait_for(is_type("approval_request"), start=start, timeout=timeout)


def decide(c, req: dict, decision: str, **extra) -> dict:
    mark = len(c.frames)
    c.send({"type": "approval_decision", "id": req["id"], "decision": decision, **extra})
    got = c.wait_for(lambda f: f.get("id") == req["id"] and f.get("type") in ("approval_resolved", "error"), start=mark)
    assert got["type"] == "approval_resolved", got
    return got


def tool_texts(fake_llm) -> list[str]:
    """Every tool result text the model received, in order."""
    out = []
    for body in fake_llm.requests():
        for m in body.get("messages", []):
            if m.get("role") == "tool":
                content = m.get("content")
                out.append(content if isinstance(content, str) else json.dumps(content))
    return out


def audit(pi) -> list[dict]:
    """The audit log of this pi (the harness gives each pi its own log dir)."""
    path = pi.log_path.parent / "approvals.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.pi_smoke
def test_deny_keeps_the_file_away_and_the_model_reads_the_reason(start_pi, pi_version, agent_client, pi_home, fake_llm):
    pi = start_pi(pi_version, mode="rpc", env=WRITES)
    c, init = connect(agent_client, pi)
    assert init["approval_policy"] == "writes" and init["pending_approvals"] == []
    prompt(c, "TOOLCALL: touch denied.txt")
    req = ask(c)
    assert req["tool_name"] == "bash" and req["input"] == {"command": "touch denied.txt"}
    assert req["policy"] == "writes" and req["preview"]["kind"] == "command"
    assert req["preview"]["command"] == "touch denied.txt" and abs(req["queued_at"] - time.time()) < 30
    assert not c.of_type("tool_execution_end"), "the tool ran before a decision"
    resolved = decide(c, req, "deny", reason="use the scratch folder instead")
    assert resolved["decision"] == "deny" and resolved["by"] == "dashboard"
    end = c.wait_for(is_type("tool_execution_end"))
    assert end["isError"] is True
    c.wait_for(run_done(pi_version))
    assert not (pi_home.cwd / "denied.txt").exists()
    assert any("use the scratch folder instead" in t for t in tool_texts(fake_llm))
    # a late answer for the same call changes nothing and says so
    mark = len(c.frames)
    c.send({"type": "approval_decision", "id": req["id"], "decision": "allow"})
    err = c.wait_for(is_type("error", id=req["id"]), start=mark)
    assert err["code"] == 1013
    assert not (pi_home.cwd / "denied.txt").exists()
    wait_until(lambda: audit(pi), 5, "the audit line")
    rec = audit(pi)[-1]
    assert rec["decision"] == "deny" and rec["by"] == "dashboard" and rec["tool_name"] == "bash"
    assert rec["summary"] == "touch denied.txt" and len(rec["args_sha256"]) == 64 and rec["latency_ms"] >= 0


def test_allow_edit_and_remember(start_pi, pi_version, agent_client, pi_home, fake_llm):
    pi = start_pi(pi_version, mode="rpc", env=WRITES)
    c, _ = connect(agent_client, pi)
    other = agent_client(pi.url)
    other.wait_for(is_type("init_state"))

    # allow: the command runs; both clients saw the question and its end
    prompt(c, "TOOLCALL: touch allowed.txt")
    req = ask(c)
    assert ask(other)["id"] == req["id"]
    decide(c, req, "allow")
    other.wait_for(is_type("approval_resolved", id=req["id"], by="dashboard", decision="allow"))
    c.wait_for(run_done(pi_version))
    assert (pi_home.cwd / "allowed.txt").exists()

    # edit and allow: the edited command runs, and the model is told what ran
    mark = len(c.frames)
    prompt(c, "TOOLCALL: touch original.txt")
    req = ask(c, start=mark)
    resolved = decide(c, req, "allow", input={"command": "touch edited.txt"})
    assert resolved["input"] == {"command": "touch edited.txt"}
    c.wait_for(run_done(pi_version), start=mark)
    assert (pi_home.cwd / "edited.txt").exists() and not (pi_home.cwd / "original.txt").exists()
    assert any("It ran: touch edited.txt" in t for t in tool_texts(fake_llm))

    # an edited input on a deny, or of the wrong shape, is refused and the question stays open
    mark = len(c.frames)
    prompt(c, "TOOLCALL: git status --short")
    req = ask(c, start=mark)
    c.send({"type": "approval_decision", "id": req["id"], "decision": "allow", "input": {"command": ""}})
    assert c.wait_for(is_type("error", id=req["id"]), start=mark)["code"] == -32602
    mark = len(c.frames)
    c.send({"type": "approval_decision", "id": req["id"], "decision": "maybe"})
    assert c.wait_for(is_type("error", id=req["id"]), start=mark)["code"] == -32602
    # allow and don't ask again: a rule for `git status`, shown to every client
    decide(c, req, "allow", remember=True)
    pol = other.wait_for(is_type("approval_policy"), start=0)
    assert {"tool": "bash", "prefix": "git status"} in pol["rules"]
    c.wait_for(run_done(pi_version), start=mark)
    mark = len(c.frames)
    prompt(c, "TOOLCALL: git status")
    c.wait_for(run_done(pi_version), start=mark)
    assert not [f for f in c.frames[mark:] if f.get("type") == "approval_request"], "the rule did not apply"
    # ...but never to a command that chains another one
    prompt(c, "TOOLCALL: git status; touch chained.txt")
    req = ask(c, start=mark)
    decide(c, req, "deny")
    c.wait_for(run_done(pi_version), start=mark)
    assert not (pi_home.cwd / "chained.txt").exists()
    wait_until(lambda: len(audit(pi)) >= 5, 5, "five audit lines")
    assert [r["by"] for r in audit(pi)] == ["dashboard", "dashboard", "dashboard", "rule", "dashboard"]


def test_timeout_denies_with_the_reason(start_pi, pi_version, agent_client, pi_home, fake_llm):
    pi = start_pi(pi_version, mode="rpc", env={**WRITES, "PI_SOCKET_APPROVAL_TIMEOUT": "1.5"})
    c, _ = connect(agent_client, pi)
    prompt(c, "TOOLCALL: touch late.txt")
    req = ask(c)
    resolved = c.wait_for(is_type("approval_resolved", id=req["id"]), timeout=15)
    assert resolved["by"] == "timeout" and resolved["reason"] == "no decision within 1.5 seconds"
    c.wait_for(run_done(pi_version))
    assert not (pi_home.cwd / "late.txt").exists()
    assert any("no decision within 1.5 seconds" in t for t in tool_texts(fake_llm))


def test_parallel_calls_are_asked_in_order(start_pi, pi_version, agent_client, pi_home, fake_llm):
    pi = start_pi(pi_version, mode="rpc", env=WRITES)
    c, _ = connect(agent_client, pi)
    fake_llm.script(
        [
            {
                "tool_calls": [
                    {"name": "bash", "arguments": {"command": "touch first.txt"}},
                    {"name": "bash", "arguments": {"command": "touch second.txt"}},
                ]
            }
        ]
    )
    prompt(c, "two at once")
    first = ask(c)
    assert first["input"]["command"] == "touch first.txt"
    mark = len(c.frames)
    decide(c, first, "allow")
    second = ask(c, start=mark)
    assert second["input"]["command"] == "touch second.txt" and second["id"] != first["id"]
    decide(c, second, "deny")
    c.wait_for(run_done(pi_version))
    assert (pi_home.cwd / "first.txt").exists() and not (pi_home.cwd / "second.txt").exists()


def test_policy_changes_live_and_shows_on_the_roster(start_pi, pi_version, agent_client, pi_home, hypivisor):
    dash = registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url})
    joined = dash.wait_for(node_event("node_joined", pi.node_id))
    assert joined["node"]["approval_policy"] == "off" and joined["node"]["pending_approvals"] == 0
    c, init = connect(agent_client, pi)
    assert init["approval_policy"] == "off"
    prompt(c, "TOOLCALL: touch free.txt")  # off: runs without a question
    c.wait_for(run_done(pi_version))
    assert (pi_home.cwd / "free.txt").exists() and not c.of_type("approval_request")

    mark = len(dash.frames)
    c.send({"type": "set_approval_policy", "policy": "all", "rules": [{"tool": "read"}]})
    pol = c.wait_for(is_type("approval_policy"))
    assert pol["policy"] == "all" and pol["rules"] == [{"tool": "read"}]
    dash.wait_for(node_event("node_updated", pi.node_id, approval_policy="all"), start=mark)
    mark_c = len(c.frames)
    prompt(c, "TOOLCALL: ls")
    req = ask(c, start=mark_c)
    dash.wait_for(node_event("node_updated", pi.node_id, pending_approvals=1), start=mark)
    decide(c, req, "allow")
    dash.wait_for(node_event("node_updated", pi.node_id, pending_approvals=0), start=mark)
    c.wait_for(run_done(pi_version), start=mark_c)
    # a bad policy is refused by the protocol and changes nothing
    c.send({"type": "set_approval_policy", "policy": "never"})
    c.wait_for(lambda f: f.get("type") == "error" and f.get("code") == -32602)
    late = agent_client(pi.url).wait_for(is_type("init_state"))
    assert late["approval_policy"] == "all" and late["approval_rules"] == [{"tool": "read"}]
    assert [r["summary"] for r in late["recent_approvals"]] == ["ls"]


def test_print_mode_with_nobody_to_ask_denies_and_exits(start_pi, pi_version, pi_home):
    pi = start_pi(pi_version, mode="print", prompt="TOOLCALL: touch printed.txt", env={"PI_SOCKET_APPROVAL": "all"})
    rc, out, err, seconds = pi.wait(timeout=60)
    assert rc == 0, err
    assert not (pi_home.cwd / "printed.txt").exists()
    assert "nobody can answer" in out
    wait_until(lambda: audit(pi), 5, "the audit line")
    assert audit(pi)[-1]["by"] == "no_ui"


def test_edit_call_preview_is_a_diff_against_the_file_now(start_pi, pi_version, agent_client, pi_home, fake_llm):
    (pi_home.cwd / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    outside = pi_home.root / "outside.txt"
    outside.write_text("keep me\n")
    pi = start_pi(pi_version, mode="rpc", env=WRITES)
    c, _ = connect(agent_client, pi)
    # an edit inside the folder is not asked under `writes`; one outside is, with a diff of the file as it is now
    fake_llm.script(
        [
            {
                "tool_calls": [
                    {
                        "name": "edit",
                        "arguments": {"path": "notes.txt", "edits": [{"oldText": "beta", "newText": "BETA"}]},
                    }
                ]
            },
            {"text": "edited"},
            {
                "tool_calls": [
                    {
                        "name": "edit",
                        "arguments": {"path": str(outside), "edits": [{"oldText": "keep me", "newText": "changed"}]},
                    }
                ]
            },
            {"text": "tried"},
        ]
    )
    prompt(c, "edit inside")
    c.wait_for(run_done(pi_version))
    assert (pi_home.cwd / "notes.txt").read_text() == "alpha\nBETA\ngamma\n"
    assert not c.of_type("approval_request")
    mark = len(c.frames)
    prompt(c, "edit outside")
    req = ask(c, start=mark)
    assert req["tool_name"] == "edit" and "outside" in (req.get("why") or "")
    pv = req["preview"]
    assert pv["kind"] == "diff" and pv["path"] == str(outside) and not pv.get("error")
    assert "-keep me" in pv["diff"] and "+changed" in pv["diff"]
    decide(c, req, "deny")
    c.wait_for(run_done(pi_version), start=mark)
    assert outside.read_text() == "keep me\n"


@pytest.mark.pi_smoke
@pytest.mark.slow
def test_terminal_answers_first_and_a_dead_bridge_never_lets_a_call_through(
    start_pi, pi_version, agent_client, pi_home
):
    pi = start_pi(pi_version, mode="tui", env={**WRITES, "PI_SOCKET_MODE": "bridge"})  # SIGKILLs the bridge child
    c, _ = connect(agent_client, pi)
    # the terminal's Enter (Allow) wins; the client sees it resolved by the terminal
    pi.submit("TOOLCALL: touch from-tui.txt")
    req = ask(c)
    pi.wait_for(r"Hyper-Pi: allow bash\?", timeout=15)
    pi.keys("Enter")
    c.wait_for(is_type("approval_resolved", id=req["id"], by="terminal", decision="allow"))
    wait_until(lambda: (pi_home.cwd / "from-tui.txt").exists(), 15, "the allowed command to run")

    # the bridge is SIGKILLed while a question is open: pi lives, its dialog still asks and decides, and the
    # restarted bridge shows the open question to a new client
    bridge = pi.bridge_pid()
    mark = len(c.frames)
    pi.submit("TOOLCALL: touch after-kill.txt")
    ask(c, start=mark)
    pi.wait_for(r"Hyper-Pi: allow bash\?", timeout=15)
    os.kill(bridge, signal.SIGKILL)
    pi.wait_bridge(starts=2)
    assert pid_alive(pi.pi_pid())
    c2, init = connect(agent_client, pi)
    assert [p["input"]["command"] for p in init["pending_approvals"]] == ["touch after-kill.txt"]
    assert not (pi_home.cwd / "after-kill.txt").exists()
    pi.keys("Down", "Down", "Enter")  # Allow, Allow and don't ask again, [Deny]
    c2.wait_for(is_type("approval_resolved", by="terminal", decision="deny"))
    time.sleep(1)
    assert not (pi_home.cwd / "after-kill.txt").exists()

    # Esc in pi aborts the run as it always does; the question disappears everywhere
    mark = len(c2.frames)
    pi.submit("TOOLCALL: touch escaped.txt")
    req = ask(c2, start=mark)
    pi.wait_for(r"Hyper-Pi: allow bash\?", timeout=15)
    pi.keys("Escape")
    resolved = c2.wait_for(is_type("approval_resolved", id=req["id"]), start=mark)
    assert resolved["by"] == "abort" and resolved["decision"] == "deny"
    time.sleep(1)
    assert not (pi_home.cwd / "escaped.txt").exists()
    assert pid_alive(pi.pi_pid())
    assert "Traceback" not in pi.screen()
    # a dashboard answers first: pi's own dialog closes by itself
    mark = len(c2.frames)
    pi.submit("TOOLCALL: touch from-dashboard.txt")
    req = ask(c2, start=mark)
    pi.wait_for(r"Hyper-Pi: allow bash\?", timeout=15)
    decide(c2, req, "allow")
    wait_until(lambda: "Hyper-Pi: allow bash" not in pi.screen(), 10, "pi's dialog to close")
    wait_until(lambda: (pi_home.cwd / "from-dashboard.txt").exists(), 15, "the allowed command to run")
    wait_until(lambda: len(audit(pi)) >= 4, 5, "four audit lines")
    assert [r["by"] for r in audit(pi)] == ["terminal", "terminal", "abort", "dashboard"]
    assert not [f for f in c2.frames if assistant_end(f) and "Hello" in text_of(f["message"])]
