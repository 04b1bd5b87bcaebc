"""Pi-DE in Chromium driving REAL pi agents (fake LLM) through a real hypivisor.

Covers: open an agent, send a prompt and watch the streamed reply and a tool card, a follow-up
while pi is streaming, abort, joining mid-stream, renaming the session, spawning pi from the modal.
The pi processes come from the pi_socket harness (integration_tests/harness/pi_proc.py); the fake
LLM's prompt keywords (harness/fake_llm.py) choose the reply: "TOOLCALL: <cmd>" runs bash,
"SLOW" streams 40 chunks 0.25 s apart.
"""

from __future__ import annotations

import pytest

from integration_tests.harness import pi_proc
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

HARNESS_READY = hasattr(pi_proc, "pi_agent_factory")


@pytest.fixture
def real_pi(request):
    """``real_pi(hv, cwd) -> agent`` (``agent.node_id``) from the pi_socket harness."""
    if not HARNESS_READY:
        pytest.skip("integration_tests/harness/pi_proc.py (real pi + shim on the fake LLM) has not landed yet")
    return request.getfixturevalue("pi_agent_factory")


def open_agent(page, hv, node_id):
    page.goto(dashboard_url(hv))
    page.click(f"[data-node-id='{node_id}']")
    page.wait_for_selector("[data-testid=inspector] >> text=bash")  # init_state arrived (pi's tools)


def send(page, text):
    page.fill("textarea[aria-label=Prompt]", text)
    page.get_by_role("button", name="Send").click()


def test_prompt_streams_reply_and_shows_a_tool_card(dash_hv, real_pi, page_factory, tmp_path):
    agent = real_pi(dash_hv, tmp_path / "proj")
    page = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(page, dash_hv, agent.node_id)

    send(page, "TOOLCALL: echo pide-e2e-out")
    card = page.locator("[data-tool=bash]").last
    card.wait_for()
    assert "echo pide-e2e-out" in card.inner_text()
    page.wait_for_selector("[data-tool=bash][data-state=success] >> text=pide-e2e-out", timeout=30_000)
    page.wait_for_selector("text=Tool result received: pide-e2e-out", timeout=30_000)
    # the prompt is shown once: pi's own echo replaced the pending row
    assert page.locator("[data-role=user] >> text=TOOLCALL: echo pide-e2e-out").count() == 1
    assert page.locator("[data-role=pending]").count() == 0
    shot(page, "real-pi-tool-card")


def test_follow_up_while_streaming_then_abort(dash_hv, real_pi, page_factory, tmp_path):
    agent = real_pi(dash_hv, tmp_path / "proj")
    page = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(page, dash_hv, agent.node_id)

    send(page, "SLOW first")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    # streamed text grows while the message is still open
    page.wait_for_function("() => (document.querySelector('.msg-assistant.is-streaming')?.innerText || '').length > 10")
    send(page, "a follow-up while you work")
    page.wait_for_selector("[data-role=pending]")
    shot(page, "real-pi-follow-up")
    page.wait_for_selector("[data-role=user] >> text=a follow-up while you work", timeout=40_000)

    send(page, "SLOW to be stopped")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("text=Aborted", timeout=20_000)
    page.wait_for_selector("button[aria-label=Stop]", state="detached", timeout=10_000)


def test_join_mid_stream_and_rename_session(dash_hv, real_pi, page_factory, tmp_path):
    agent = real_pi(dash_hv, tmp_path / "proj")
    first = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(first, dash_hv, agent.node_id)
    send(first, "SLOW stream for a latecomer")
    first.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)

    late = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(late, dash_hv, agent.node_id)
    late.wait_for_selector(".msg-assistant.is-streaming")  # init_state.partial, not a gap

    late.get_by_title("Rename this pi session").click()
    late.fill("input[aria-label='Session name']", "pide renamed")
    late.keyboard.press("Enter")
    first.wait_for_selector(f"[data-node-id='{agent.node_id}'] >> text=pide renamed", timeout=15_000)


def test_spawn_real_pi_from_the_modal(dash_hv_factory, real_pi, page_factory, tmp_path):
    spawn_env = getattr(pi_proc, "spawn_env", None)
    if spawn_env is None:
        pytest.skip("pi_proc.spawn_env (HYPI_SPAWN_COMMAND for a real pi on the fake LLM) has not landed yet")
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    hv = dash_hv_factory(home=home, env=spawn_env(tmp_path))
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(hv))
    page.get_by_role("button", name="+ Spawn agent").click()
    page.locator("[data-testid=spawn-modal] >> text=work").click()
    page.fill("input[aria-label='New folder name']", "spawned-here")
    page.get_by_role("button", name="Deploy agent here").click()
    page.wait_for_selector("[data-testid=spawn-modal]", state="detached", timeout=60_000)
    page.wait_for_selector("[data-testid=roster] >> text=spawned-here")
