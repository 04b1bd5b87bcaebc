"""pi's own commands from a client, on real pi (0.73.1, 1.5.2, 1.6.0) through the shim and the real bridge:
models and the thinking level (`list_models`, `set_model`, `set_thinking_level`), `run_command` compact/new/reload,
and the command list saying what this pi cannot run from outside its terminal (specs/protocol.md §3.3)."""

from __future__ import annotations

import json
import uuid

import pytest

from integration_tests.test_pi_link import assistant_end, connect, is_type, prompt, run_done, text_of

pytestmark = [pytest.mark.pi]

UNSUPPORTED = 1014


def expands(version: str) -> bool:
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (1, 5)


@pytest.mark.pi_smoke
def test_models_are_listed_and_the_model_and_thinking_level_change(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    c.send({"type": "list_models"})
    lst = c.wait_for(lambda f: f.get("type") in ("models_list", "error"))
    assert lst["type"] == "models_list", lst
    assert {(m["provider"], m["id"]) for m in lst["models"]} == {("fake", "fake-model"), ("fake", "fake-vision")}
    vision = next(m for m in lst["models"] if m["id"] == "fake-vision")
    assert vision["input"] == ["text", "image"] and vision["reasoning"] is True and vision["context_window"] == 200000
    assert lst["current"] == {"provider": "fake", "id": "fake-model"}
    assert lst["thinking_levels"] == ["off"]  # fake-model does not reason

    c.send({"type": "set_model", "provider": "fake", "id": "fake-vision"})
    sel = c.wait_for(is_type("model_select"))
    assert sel["model"] == "fake/fake-vision"
    after = c.wait_for(lambda f: f.get("type") == "models_list" and f["current"]["id"] == "fake-vision")
    assert "high" in after["thinking_levels"]
    c.send({"type": "set_thinking_level", "level": "high"})
    c.wait_for(lambda f: f.get("type") == "models_list" and f["thinking_level"] == "high")
    c.wait_for(is_type("thinking_level_select", level="high"))
    assert pi.call({"type": "get_state"})["data"]["model"]["id"] == "fake-vision"

    c.send({"type": "set_model", "provider": "fake", "id": "no-such-model"})
    err = c.wait_for(is_type("error"))
    assert err["code"] == 1006 and "no-such-model" in err["message"]
    c.send({"type": "set_thinking_level", "level": "loud"})
    assert c.wait_for(is_type("error", code=-32602))


def test_compact_runs_and_pi_s_refusal_reaches_the_client(start_pi, pi_version, agent_client, pi_home):
    settings = pi_home.agent / "settings.json"
    # keep almost nothing verbatim, so two short exchanges are enough to compact
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "compaction": {"keepRecentTokens": 1}}))
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    c.send({"type": "run_command", "id": "c0", "name": "compact"})
    first = c.wait_for(lambda f: f.get("id") == "c0")
    if pi_version.startswith("0."):  # 0.73 compacts even an empty session
        assert first["type"] == "ack", first
    else:  # pi's own reason reaches the client
        assert first["code"] == 1012 and "Nothing to compact" in first["message"], first
    for i in range(2):
        start = len(c.frames)
        prompt(c, f"message {i}")
        c.wait_for(run_done(pi_version), timeout=30, start=start)
    c.send({"type": "run_command", "id": "c1", "name": "compact", "args": "keep it short"})
    done = c.wait_for(lambda f: f.get("id") == "c1", timeout=60)
    assert done["type"] == "ack", done
    c.wait_for(is_type("session_compact"), timeout=10)


def test_new_session_and_reload_where_pi_has_an_api(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    c.send({"type": "list_commands"})
    cmds = {x["name"]: x for x in c.wait_for(is_type("commands_list"))["commands"]}
    assert "hyperpi-session" not in cmds  # the shim's own command is not offered
    assert cmds["compact"]["source"] == "builtin" and cmds["compact"]["available"] is True
    assert cmds["export"]["available"] is False and "terminal" in cmds["export"]["note"]
    assert cmds["new"]["available"] is expands(pi_version)
    assert cmds["skill:harden-pi-socket"]["available"] is expands(pi_version)
    prompt(c, "before the new session")
    c.wait_for(run_done(pi_version), timeout=30)
    rid = f"n-{uuid.uuid4().hex[:6]}"
    c.send({"type": "run_command", "id": rid, "name": "new"})
    if not expands(pi_version):
        err = c.wait_for(is_type("error", id=rid))
        assert err["code"] == UNSUPPORTED and "1.5" in err["message"]
        c.send({"type": "run_command", "id": "r1", "name": "reload"})
        assert c.wait_for(is_type("error", id="r1"))["code"] == UNSUPPORTED
        return
    c.wait_for(is_type("ack", id=rid), timeout=30)
    init = c.wait_for(lambda f: f.get("type") == "init_state" and f["messages"] == [], timeout=30, start=1)
    assert init["session_file"]
    prompt(c, "after the new session")
    end = c.wait_for(lambda f: assistant_end(f) and "after the new session" in text_of(f["message"]), timeout=30)
    assert end
    c.send({"type": "run_command", "id": "r2", "name": "reload"})
    c.wait_for(is_type("ack", id="r2"), timeout=30)
    # the reloaded shim still answers
    c.send({"type": "list_models"})
    c.wait_for(is_type("models_list"), timeout=30)


def test_a_prompt_template_is_expanded_on_pi_15_and_later(start_pi, pi_version, agent_client, fake_llm, pi_home):
    (pi_home.agent / "prompts").mkdir(parents=True, exist_ok=True)
    (pi_home.agent / "prompts" / "greet.md").write_text(
        "---\ndescription: greet someone\n---\nPlease greet $1 warmly.\n"
    )
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    c.send({"type": "list_commands"})
    cmds = {x["name"]: x for x in c.wait_for(is_type("commands_list"))["commands"]}
    assert cmds["greet"]["source"] == "prompt" and cmds["greet"]["available"] is expands(pi_version)
    if not expands(pi_version):
        return
    prompt(c, "/greet Ada")
    c.wait_for(run_done(pi_version), timeout=30)
    assert fake_llm.user_texts()[-1].strip() == "Please greet Ada warmly."
