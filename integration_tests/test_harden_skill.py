"""A real pi 0.73.1 resolves `/skill:harden-pi-socket` and sends the skill's instructions to the model.

pi runs against the fake LLM (loopback, ephemeral port) with a temporary HOME,
agent dir and cwd, so nothing on the machine is read or written. The check is
on what reached the model: the fake LLM's recorded request must contain a
distinctive sentence of SKILL.md. Without the skill the same prompt must NOT
contain it (pi passes unknown `/skill:` text through literally), which proves
the check can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "integration_tests" / "harness"
SKILL_DIR = REPO / "skills" / "harden-pi-socket"
EXTENSION_DIR = REPO / "pi_socket" / "extension"
PI = (
    Path(os.environ.get("HYPI_CACHE", Path.home() / ".cache" / "hyper-pi"))
    / "pi-0.73.1"
    / "node_modules"
    / ".bin"
    / "pi"
)
SENTENCE = "Never delete, truncate, rotate or edit a log file."

pytestmark = [
    pytest.mark.pi,
    pytest.mark.skipif(not PI.exists(), reason="pi 0.73.1 missing: run bash integration_tests/setup_env.sh"),
]


@pytest.fixture
def fake_llm(tmp_path):
    """The fake LLM on 127.0.0.1 with an ephemeral port; yields its base URL."""
    port_file = tmp_path / "llm.port"
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS / "fake_llm.py"), "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "fake LLM did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def pi_env(tmp_path, fake_llm):
    """Temp HOME, agent dir (models.json pointed at the fake LLM, settings.json) and cwd for one pi."""
    home, agent, work = tmp_path / "home", tmp_path / "agent", tmp_path / "work"
    for d in (home, agent, work):
        d.mkdir()
    models = json.loads((HARNESS / "models.json").read_text())
    models["providers"]["fake"]["baseUrl"] = f"{fake_llm}/v1"
    (agent / "models.json").write_text(json.dumps(models))
    shutil.copy(HARNESS / "settings.json", agent / "settings.json")
    env = {
        **os.environ,
        "HOME": str(home),
        "PI_CODING_AGENT_DIR": str(agent),
        "PI_OFFLINE": "1",
        "PI_SKIP_VERSION_CHECK": "1",
        "PI_SOCKET_LOG_DIR": str(tmp_path / "logs"),
        # if the installed extension starts the bridge: ephemeral port, no hypivisor to look for
        "PI_SOCKET_PORT": "0",
        "HYPIVISOR_WS": "off",
    }
    return {"env": env, "agent": agent, "cwd": work, "llm": fake_llm}


def script_reply(llm: str, text: str) -> None:
    """Queue a short reply: the default one echoes the whole prompt (a 5 KB skill) slowly, in small chunks."""
    req = urllib.request.Request(
        f"{llm}/_fake/script",
        data=json.dumps([{"text": text}]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=5).close()


def run_pi(pi_env, *args: str) -> subprocess.CompletedProcess:
    script_reply(pi_env["llm"], "skill received")
    return subprocess.run(
        [str(PI), "-p", "--no-session", *args],
        env=pi_env["env"],
        cwd=pi_env["cwd"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def user_texts(llm: str) -> list[str]:
    """Every user message the model received, as plain text."""
    with urllib.request.urlopen(f"{llm}/_fake/requests", timeout=5) as resp:
        bodies = json.load(resp)
    texts = []
    for body in bodies:
        for msg in body.get("messages", []):
            if msg.get("role") != "user":
                continue
            content = msg.get("content")
            texts.append(
                content
                if isinstance(content, str)
                else "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
            )
    return texts


def system_prompts(llm: str) -> list[str]:
    with urllib.request.urlopen(f"{llm}/_fake/requests", timeout=5) as resp:
        bodies = json.load(resp)
    return [m.get("content") for b in bodies for m in b.get("messages", []) if m.get("role") == "system"]


def test_skill_command_sends_the_skill_instructions_to_the_model(pi_env):
    done = run_pi(pi_env, "--skill", str(SKILL_DIR), "/skill:harden-pi-socket")
    assert done.returncode == 0, done.stderr
    texts = user_texts(pi_env["llm"])
    assert texts, "pi sent no request to the model"
    prompt = texts[-1]
    assert prompt.startswith('<skill name="harden-pi-socket"')
    assert SENTENCE in prompt
    assert "python -m pi_socket.harden report" in prompt
    assert "skill received" in done.stdout
    # `disable-model-invocation`: the skill is not advertised in the system prompt (specs/hardening.md), so the
    # shim costs no pi session any context tokens; the explicit command above is how it runs
    prompts = system_prompts(pi_env["llm"])
    assert prompts and not any("harden-pi-socket" in (s or "") for s in prompts)


def test_without_the_skill_the_command_is_just_text(pi_env):
    """Control: proves the check above depends on the skill being installed."""
    done = run_pi(pi_env, "--no-skills", "/skill:harden-pi-socket")
    assert done.returncode == 0, done.stderr
    texts = user_texts(pi_env["llm"])
    assert texts[-1] == "/skill:harden-pi-socket"
    assert SENTENCE not in texts[-1]


def all_requests(llm: str) -> list[dict]:
    with urllib.request.urlopen(f"{llm}/_fake/requests", timeout=5) as resp:
        return json.load(resp)


def test_the_agent_can_run_the_helper_the_skill_names(pi_env, tmp_path):
    """The skill's first step, done by pi's own bash tool: the report reaches the model as a tool result."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pi-socket.jsonl").write_text(
        json.dumps(
            {
                "ts": "2026-11-23T20:00:00.000Z",
                "level": "error",
                "component": "bridge",
                "msg": "unhandled error at boundary",
                "needsHardening": True,
                "boundary": "client.message",
                "error": "KeyError: 'type'",
                "stack": "tb",
            }
        )
        + "\n"
    )
    command = (
        f"cd {REPO} && {sys.executable} -m pi_socket.harden report --log-dir {logs} "
        f"--ledger {tmp_path / 'ledger.jsonl'}"
    )
    script = [{"tool_calls": [{"name": "bash", "arguments": {"command": command}}]}, {"text": "report read"}]
    req = urllib.request.Request(
        f"{pi_env['llm']}/_fake/script",
        data=json.dumps(script).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=5).close()
    done = subprocess.run(
        [str(PI), "-p", "--no-session", "--skill", str(SKILL_DIR), "/skill:harden-pi-socket"],
        env=pi_env["env"],
        cwd=pi_env["cwd"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "report read" in done.stdout
    tool_results = [m for b in all_requests(pi_env["llm"]) for m in b["messages"] if m.get("role") == "tool"]
    assert tool_results, "the bash tool result never reached the model"
    result = json.dumps(tool_results[-1]["content"])
    assert "NOT healthy: 1 unprocessed error class(es): 1 new" in result
    assert "bridge / client.message" in result


def _manifest_skills() -> list[str]:
    try:
        manifest = json.loads((EXTENSION_DIR / "package.json").read_text())
    except (OSError, ValueError):
        return []
    return list((manifest.get("pi") or {}).get("skills") or [])


@pytest.mark.skipif(
    not _manifest_skills(),
    reason="pi_socket/extension/package.json has no pi.skills entry yet (owned by the shim/installer work)",
)
def test_installing_pi_socket_makes_the_skill_available(pi_env):
    """`python -m pi_socket install` (the real installer) registers the extension package, whose manifest ships skills/."""
    installed = subprocess.run(
        [sys.executable, "-m", "pi_socket", "install", "--pi", str(PI)],
        env=pi_env["env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    settings = json.loads((pi_env["agent"] / "settings.json").read_text())
    assert settings.get("packages"), settings
    done = run_pi(pi_env, "/skill:harden-pi-socket")  # no --skill: only the installed package can provide it
    assert done.returncode == 0, done.stderr
    prompt = user_texts(pi_env["llm"])[-1]
    assert prompt.startswith('<skill name="harden-pi-socket"') and SENTENCE in prompt
    # the shim and bridge that the installer put in pi logged no unanticipated error while serving this run
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "pi_socket.harden",
            "status",
            "--log-dir",
            pi_env["env"]["PI_SOCKET_LOG_DIR"],
            "--ledger",
            str(pi_env["cwd"] / "ledger.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stdout + status.stderr
