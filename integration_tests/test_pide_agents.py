"""Pi-DE in Chromium driving REAL pi agents (fake LLM) through a real hypivisor.

Covers: open an agent, send a prompt and watch the streamed reply and a tool card, a prompt typed in
pi's own terminal, a follow-up while pi is streaming, abort, joining mid-stream, renaming the
session, spawning pi from the modal. pi runs with the pi_socket shim installed exactly as a user
installs it (integration_tests/harness/pi_proc.py); the fake LLM's prompt keywords choose the reply
("TOOLCALL: <cmd>" runs bash; ``fake_llm.slow()`` queues a slowly streamed reply).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from integration_tests.harness.pi_proc import pi_bin
from integration_tests.test_pide_helpers import (  # noqa: F401  (fixtures)
    dash_hv,
    dash_hv_factory,
    dashboard_url,
    page_factory,
    pide_browser,
    shot,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"  # Node 20 runs it directly; pi_version-parametrised tests also cover 1.5.2


@pytest.fixture
def pi_on(start_pi):
    """``pi_on(hv, mode="tui"|"rpc", version=PI)``: a real pi registered with that hypivisor."""

    def start(hv, mode="tui", version=PI, **kw):
        return start_pi(version, mode=mode, env={"HYPIVISOR_WS": hv.ws_url}, **kw)

    return start


def open_agent(page, hv, node_id):
    page.goto(dashboard_url(hv))
    page.click(f"[data-node-id='{node_id}']", timeout=20_000)
    page.wait_for_selector("[data-testid=inspector] .mono >> text=bash")  # init_state arrived with pi's tools


def send(page, text):
    page.fill("textarea[aria-label=Prompt]", text)
    page.get_by_role("button", name="Send").click()


def test_prompt_streams_reply_tool_card_and_tui_input(dash_hv, pi_on, pi_version, page_factory):
    pi = pi_on(dash_hv, mode="rpc" if pi_version != PI else "tui", version=pi_version)
    page = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(page, dash_hv, pi.node_id)

    send(page, "TOOLCALL: echo pide-e2e-out")
    page.wait_for_selector("[data-tool=bash] .tool-summary >> text=echo pide-e2e-out", timeout=30_000)
    page.wait_for_selector("[data-tool=bash][data-state=success] >> text=pide-e2e-out", timeout=30_000)
    page.wait_for_selector("text=Tool result received: pide-e2e-out", timeout=30_000)
    # shown once: pi's own echo of the prompt replaced the pending row
    assert page.locator("[data-role=user] >> text=TOOLCALL: echo pide-e2e-out").count() == 1
    page.wait_for_selector("[data-role=pending]", state="detached")
    # the roster saw the run (working → idle) through the registry
    page.wait_for_selector(f"[data-node-id='{pi.node_id}'][data-activity=idle]")
    shot(page, f"real-pi-{pi_version}-tool-card")

    if pi.mode == "tui":  # a prompt typed in pi's own terminal shows up in the dashboard
        pi.submit("typed in the terminal")
        page.wait_for_selector("[data-role=user] >> text=typed in the terminal", timeout=30_000)
        page.wait_for_selector("text=You said: typed in the terminal", timeout=30_000)


def test_follow_up_while_streaming_then_abort(dash_hv, pi_on, fake_llm, page_factory):
    pi = pi_on(dash_hv)
    page = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(page, dash_hv, pi.node_id)

    fake_llm.slow(words=60, delay=0.1)
    send(page, "stream slowly please")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    # streamed text grows while the message is still open
    page.wait_for_function("() => /w5\\b/.test(document.querySelector('.msg-assistant.is-streaming')?.innerText || '')",
                           timeout=20_000)
    send(page, "a follow-up while you work")
    page.wait_for_selector("[data-role=pending] >> text=a follow-up while you work")
    shot(page, "real-pi-follow-up")
    # pi takes it after the run: it appears as pi's user message and gets its own reply
    page.wait_for_selector("[data-role=user] >> text=a follow-up while you work", timeout=40_000)
    page.wait_for_selector("text=You said: a follow-up while you work", timeout=40_000)

    fake_llm.slow(words=200, delay=0.1)
    send(page, "this one gets stopped")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("text=Aborted", timeout=20_000)
    page.wait_for_selector("button[aria-label=Stop]", state="detached", timeout=10_000)
    assert page.locator("text=w150").count() == 0


def test_join_mid_stream_and_rename_session(dash_hv, pi_on, fake_llm, page_factory):
    pi = pi_on(dash_hv, mode="rpc")
    first = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(first, dash_hv, pi.node_id)
    fake_llm.slow(words=80, delay=0.1)
    send(first, "stream for a latecomer")
    first.wait_for_function("() => /w10\\b/.test(document.querySelector('.msg-assistant.is-streaming')?.innerText || '')",
                            timeout=20_000)

    late = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(late, dash_hv, pi.node_id)
    # init_state.partial: the latecomer sees the words already streamed, then the rest
    late.wait_for_selector(".msg-assistant.is-streaming >> text=/w3 w4/", timeout=5_000)
    late.wait_for_selector("text=/w79/", timeout=30_000)

    late.get_by_title("Rename this pi session").click()
    late.fill("input[aria-label='Session name']", "pide renamed")
    late.keyboard.press("Enter")
    first.wait_for_selector(f"[data-node-id='{pi.node_id}'] >> text=pide renamed", timeout=15_000)
    first.wait_for_selector("[data-testid=chat-stage] >> text=pide renamed")


def test_spawn_real_pi_from_the_modal(dash_hv_factory, pi_home, page_factory):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (run integration_tests/setup_env.sh)")
    # The hypivisor's HOME is pi's test HOME; PI_* settings (agent dir with the shim, fake LLM) pass
    # through to the spawned pi. The template starts pi in tmux on a private socket we kill after.
    sock = f"pide-spawn-{uuid.uuid4().hex[:8]}"
    pi_env = {k: v for k, v in pi_home.env.items() if k.startswith("PI_")}
    template = f"tmux -L {sock} -f /dev/null new-session -d -s {{session}} -x 120 -y 40 -c {{path}} {pi_bin(PI)}"
    hv = dash_hv_factory(home=pi_home.home, env={**pi_env, "HYPI_SPAWN_COMMAND": template, "HYPI_SPAWN_TIMEOUT": "40"})
    (pi_home.home / "work").mkdir(exist_ok=True)
    try:
        page = page_factory(viewport={"width": 1280, "height": 800})
        page.goto(dashboard_url(hv))
        page.get_by_role("button", name="+ Spawn agent").click()
        page.locator("[data-testid=spawn-modal] .dir-item", has_text="work").click()
        page.wait_for_selector("[data-testid=spawn-path] >> text=~/work")
        page.fill("input[aria-label='New folder name']", "spawned-here")
        page.get_by_role("button", name="Deploy agent here").click()
        page.wait_for_selector("[data-testid=spawn-modal]", state="detached", timeout=60_000)
        page.wait_for_selector("[data-testid=roster] >> text=spawned-here")
        # the spawned agent is selected and its conversation is live
        page.wait_for_selector("[data-testid=inspector] .mono >> text=bash", timeout=20_000)
        send(page, "hello spawned pi")
        page.wait_for_selector("text=You said: hello spawned pi", timeout=30_000)
        shot(page, "real-pi-spawned")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=10)


def test_hypivisor_restart_banner_then_the_same_pi_answers_again(dash_hv, start_pi, page_factory):
    pi = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url, "PI_SOCKET_RECONNECT_MS": "200"})
    page = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(page, dash_hv, pi.node_id)
    send(page, "before the restart")
    page.wait_for_selector("text=You said: before the restart", timeout=30_000)

    dash_hv.kill()
    page.wait_for_selector("[data-testid=disconnected-banner]")
    page.wait_for_selector("[data-testid=inline-state]")
    assert page.locator("text=You said: before the restart").count() == 1  # the conversation stays
    dash_hv.start()
    page.wait_for_selector("[data-testid=disconnected-banner]", state="detached", timeout=15_000)
    page.wait_for_selector("[data-testid=inline-state]", state="detached", timeout=20_000)
    # same pi, same node id, same history, and it still takes prompts
    assert page.locator("text=You said: before the restart").count() == 1
    send(page, "after the restart")
    page.wait_for_selector("text=You said: after the restart", timeout=30_000)
    shot(page, "real-pi-after-restart")
