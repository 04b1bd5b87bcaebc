"""Pi-DE in Chromium driving REAL pi agents (fake LLM) through a real hypivisor.

Covers: open an agent, send a prompt and watch the streamed reply and a tool card, a prompt typed in
pi's own terminal, a follow-up while pi is streaming, abort, joining mid-stream, renaming the
session, spawning pi from the modal. pi runs with the pi_socket shim installed exactly as a user
installs it (integration_tests/harness/pi_proc.py); the fake LLM's prompt keywords choose the reply
("TOOLCALL: <cmd>" runs bash; ``fake_llm.slow()`` queues a slowly streamed reply).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid

import pytest

from integration_tests.harness.pi_proc import pi_bin, stop_services_of
from integration_tests.harness.pide import dashboard_url, shot

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"  # Node 20 runs it directly; pi_version-parametrised tests also cover 1.5.2 and 1.6.0


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


@pytest.mark.pi_smoke
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
    page.wait_for_function(
        "() => /w5\\b/.test(document.querySelector('.msg-assistant.is-streaming')?.innerText || '')", timeout=20_000
    )
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
    first.wait_for_function(
        "() => /w10\\b/.test(document.querySelector('.msg-assistant.is-streaming')?.innerText || '')", timeout=20_000
    )

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
        stop_services_of(pi_home.home)  # the spawned pi's machine service (the hypivisor's runtime dir)


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


def test_hypivisor_sigkill_open_agent_goes_direct_then_continues_without_duplicates(
    dash_hv, start_pi, fake_llm, pi_version, page_factory
):
    """The open conversation survives a dead hypivisor by talking to the bridge's own port.

    The dashboard is served from an ephemeral port, which the bridge does not allow as an Origin by
    default (only the hypivisor's main port and 5180), hence HYPI_ALLOWED_ORIGINS on pi.
    """
    tag = uuid.uuid4().hex[:6]
    origin = dashboard_url(dash_hv).rstrip("/")
    pi = start_pi(
        pi_version,
        mode="rpc",
        env={"HYPIVISOR_WS": dash_hv.ws_url, "PI_SOCKET_RECONNECT_MS": "200", "HYPI_ALLOWED_ORIGINS": origin},
    )
    page = page_factory(viewport={"width": 1280, "height": 800})
    sockets: list[str] = []
    live = {"now": 0, "max": 0}  # agent links open at once (proxied or direct; not the registry /ws)

    def on_socket(ws):
        sockets.append(ws.url)
        if ws.url.split("?", 1)[0].endswith("/ws"):  # the registry link (/ws?roster=chunks)
            return
        live["now"] += 1
        live["max"] = max(live["max"], live["now"])
        ws.on("close", lambda _ws: live.__setitem__("now", live["now"] - 1))

    page.on("websocket", on_socket)
    open_agent(page, dash_hv, pi.node_id)
    direct_url = f"ws://127.0.0.1:{pi.port}/"
    send(page, f"before the kill {tag}")
    page.wait_for_selector(f"text=You said: before the kill {tag}", timeout=30_000)
    assert direct_url not in sockets  # the normal route is the proxy
    assert page.locator("[data-testid=direct-link]").count() == 0

    dash_hv.kill()  # SIGKILL: no close frames, no cleanup
    page.wait_for_selector("[data-testid=direct-link] >> text=Direct connection (hypivisor down)", timeout=15_000)
    page.wait_for_selector("[data-testid=disconnected-banner]")
    assert direct_url in sockets
    assert page.locator("[data-testid=inline-state]").count() == 0  # no "connection lost" while direct works

    # a prompt while the hypivisor is dead: its reply streams in over the direct link
    fake_llm.slow(words=40, delay=0.1)
    send(page, f"while it is down {tag}")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=20_000)
    page.wait_for_function(
        "() => /w5\\b/.test(document.querySelector('.msg-assistant.is-streaming')?.innerText || '')", timeout=20_000
    )
    shot(page, f"direct-fallback-{pi_version}")
    page.wait_for_selector("text=/w39/", timeout=30_000)
    page.wait_for_selector("button[aria-label=Stop]", state="detached", timeout=20_000)

    dash_hv.start()
    page.wait_for_selector("[data-testid=disconnected-banner]", state="detached", timeout=15_000)
    # the working direct link is kept after the hypivisor is back (the note loses "(hypivisor down)")
    page.wait_for_selector("[data-testid=direct-link] >> text=/^Direct connection$/", timeout=10_000)
    page.wait_for_selector(f"[data-node-id='{pi.node_id}']", timeout=15_000)  # the bridge registered again
    send(page, f"after the restart {tag}")
    page.wait_for_selector(f"text=You said: after the restart {tag}", timeout=30_000)
    page.wait_for_selector("[data-role=pending]", state="detached", timeout=10_000)

    # every message exactly once, in order, in the page and at the LLM
    prompts = [f"before the kill {tag}", f"while it is down {tag}", f"after the restart {tag}"]
    for p in prompts:
        assert page.locator(f"[data-role=user] >> text={p}").count() == 1, p
    assert page.locator(f"text=You said: before the kill {tag}").count() == 1
    assert page.locator(f"text=You said: after the restart {tag}").count() == 1
    assert page.locator("text=/w39/").count() == 1
    texts = page.locator("[data-role=user]").all_inner_texts()
    assert [next(i for i, t in enumerate(texts) if p in t) for p in prompts] == sorted(
        next(i for i, t in enumerate(texts) if p in t) for p in prompts
    )
    assert [t for t in fake_llm.user_texts() if tag in t] == prompts
    assert live["max"] == 1, live  # never two agent links at once
    # a reload of the same conversation through the proxy agrees: pi's history has no doubles either
    fresh = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(fresh, dash_hv, pi.node_id)
    for p in prompts:
        assert fresh.locator(f"[data-role=user] >> text={p}").count() == 1, p
    assert fresh.locator("[data-testid=direct-link]").count() == 0


HISTORY_TURNS = 110
HISTORY_REPLY = 6_000  # 110 x 6 KB: init_state holds ~80 turns (500 KiB), the rest takes two 50-message pages


def build_long_rpc_session(pi, fake_llm, turns: int, reply_bytes: int) -> list[str]:
    """Like test_pi_history.build_long_session, with more, smaller turns so paging needs several pages."""
    texts = []
    assert pi.call({"type": "set_auto_compaction", "enabled": False})["success"]  # keep the whole session
    for i in range(turns):
        reply = f"reply-{i:03d} " + ("lorem " * (reply_bytes // 6))
        fake_llm.script([{"text": reply, "chunk": 16_000, "delay": 0}])
        mark = len(pi.events)
        ok = pi.call({"type": "prompt", "message": f"question-{i:03d}"})
        assert ok and ok["success"], ok
        assert pi.until(lambda e: e.get("type") == "agent_end", timeout=20), "run did not end"
        assert any(
            e.get("type") == "message_end" and (e.get("message") or {}).get("role") == "assistant"
            for e in pi.events[mark:]
        )
        texts += [f"question-{i:03d}", f"reply-{i:03d}"]
    return texts


def rendered_rows(page) -> dict[int, str]:
    """Row index → the label it starts with, for the rows the virtualiser has in the DOM right now."""
    return {
        int(k): v
        for k, v in page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('[data-testid=message-list] .row[data-index]')].map(r =>
            [r.dataset.index, ((r.innerText.match(/(question|reply)-\\d{3}/) || ['?'])[0])]))""").items()
    }


def test_real_bridge_history_cut_pages_back_to_the_first_message_once_each(dash_hv, start_pi, fake_llm, page_factory):
    pi = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})
    texts = build_long_rpc_session(pi, fake_llm, HISTORY_TURNS, HISTORY_REPLY)
    total = len(texts)
    page = page_factory(viewport={"width": 1280, "height": 800})
    requests: list[dict] = []

    def on_socket(ws):
        if "/ws/agent/" in ws.url:
            ws.on(
                "framesent",
                lambda payload: (
                    requests.append(json.loads(payload))
                    if isinstance(payload, str) and '"fetch_history"' in payload
                    else None
                ),
            )

    page.on("websocket", on_socket)
    open_agent(page, dash_hv, pi.node_id)
    page.wait_for_selector(f"text=reply-{HISTORY_TURNS - 1:03d}", timeout=20_000)
    note = page.locator("[data-testid=history-note]").inner_text()
    shown = int(re.search(r"\((\d+) of (\d+)\)", note).group(1))
    assert re.search(rf"of {total}\)", note), note
    assert 0 < shown < total - 50, f"the 500 KiB cut should leave more than one page to fetch: {note}"

    scroller = page.locator("[data-testid=message-list]")
    deadline = time.monotonic() + 60
    while page.locator("[data-testid=history-note]").count() and time.monotonic() < deadline:
        scroller.evaluate("el => el.scrollTop = 0")
        page.wait_for_timeout(200)
    assert page.locator("[data-testid=history-note]").count() == 0, "did not reach the beginning"
    befores = [r["before"] for r in requests]
    assert len(befores) >= 2 and befores == sorted(set(befores), reverse=True), befores
    assert befores[0] == total - shown

    # walk the whole conversation top to bottom, noting each row the virtualiser renders
    seen: dict[int, str] = {}
    scroller.evaluate("el => el.scrollTop = 0")
    for _ in range(2000):
        page.wait_for_timeout(30)
        for idx, label in rendered_rows(page).items():
            assert seen.setdefault(idx, label) == label, (idx, seen[idx], label)
        done = scroller.evaluate("el => el.scrollTop + el.clientHeight >= el.scrollHeight - 2")
        if done and len(seen) >= total:
            break
        scroller.evaluate("el => el.scrollTop += el.clientHeight")
    assert sorted(seen) == list(range(total)), f"rows: {len(seen)} of {total}"
    assert [seen[i] for i in range(total)] == texts  # each message exactly once, in order
    assert page.locator("text=question-000").count() <= 1


def test_prompt_with_a_text_attachment_leaves_no_queued_row(dash_hv, pi_on, page_factory, tmp_path):
    # The bridge appends a text attachment to the prompt, so pi's echo is not the typed text: the
    # pending row is settled by the ack's prompt id and order, not by comparing text.
    pi = pi_on(dash_hv)
    page = page_factory(viewport={"width": 1280, "height": 800})
    open_agent(page, dash_hv, pi.node_id)

    note = tmp_path / "notes.txt"
    note.write_text("attached-body-7f3")
    page.set_input_files("input[type=file]", str(note))
    page.wait_for_selector("[data-testid=attachment] >> text=notes.txt")
    send(page, "read the attached note")
    page.wait_for_selector("[data-role=user] >> text=read the attached note", timeout=30_000)
    page.wait_for_selector("text=You said: read the attached note", timeout=30_000)
    # pi's echo has the file; the bubble shows it as a chip, not as the bridge's <file> markup
    page.locator("[data-role=user]").last.locator("[data-testid=file-chip] >> text=notes.txt").wait_for()
    assert "attached-body-7f3" not in page.locator("[data-role=user]").last.inner_text()
    page.wait_for_selector("[data-role=pending]", state="detached", timeout=5_000)
    # a second prompt after it is settled the same way
    send(page, "and one more")
    page.wait_for_selector("text=You said: and one more", timeout=30_000)
    page.wait_for_selector("[data-role=pending]", state="detached", timeout=5_000)
    shot(page, "real-pi-text-attachment")
