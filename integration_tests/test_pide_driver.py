"""Pi-DE driver controls, in Chromium against a real hypivisor and real pi agents (fake LLM).

* Stop an agent from the roster (after a confirmation): pi ends cleanly (``run_command quit``: the shim aborts
  a run, then ``ctx.shutdown()``), its tmux session and process are gone, the open conversation says it exited.
  Rename from the roster too. On every pi version.
* A spawned agent shows its ``tmux attach`` command with a copy button and the machine to run it on, still
  there after a reload (the hypivisor keeps ``NodeInfo.tmux_session``); cards are named after the folder until
  pi names them.
* The keyboard: Alt+↑/↓ and ``[``/``]`` between agents, ``c`` the composer, ``i`` the inbox, Esc aborts, ``?``
  lists the keys in a dialog; single keys do nothing while typing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.pi_proc import pi_bin, pi_path_env
from integration_tests.harness.pide import dashboard_url, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

WIDE = {"width": 1440, "height": 900}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.fixture
def spawning_hv(dash_hv_factory, pi_home, tmux_env, tmp_path):
    """A hypivisor that spawns real pi in real tmux: returns (start, spawn) for a pi version."""

    def start(version: str):
        bindir = tmp_path / f"bin-{version}"
        bindir.mkdir()
        (bindir / "pi").symlink_to(pi_bin(version))
        # A bridge child per pi: the spawn's allow-listed environment has no XDG_RUNTIME_DIR, so a machine service
        # the shim started would not be this test's own (it would outlive the test, or be another test's).
        pi_env = {k: v for k, v in pi_home.env.items() if k.startswith("PI_")} | {"PI_SOCKET_MODE": "bridge"}
        path = f"{bindir}{os.pathsep}{pi_path_env(version, os.environ['PATH'])}"
        return dash_hv_factory(home=pi_home.root, env={**pi_env, **tmux_env, "PATH": path, "HYPI_SPAWN_TIMEOUT": "40"})

    return start


def spawn(hv, path) -> dict:
    """``spawn_agent`` over the registry socket (in a thread of its own: Playwright's loop holds this one)."""

    async def go():
        async with await RegistryClient.connect(hv) as c:
            return await c.call("spawn_agent", {"path": str(path)}, timeout=60)

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(asyncio.run, go()).result(timeout=90)
    assert "result" in answer, answer
    return answer["result"]


def tmux_has(tmux_env, session: str) -> bool:
    r = subprocess.run(["tmux", "has-session", "-t", f"={session}"], env={**os.environ, **tmux_env},
                       capture_output=True, timeout=10)  # fmt: skip
    return r.returncode == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def send(page, text):
    page.fill("textarea[aria-label=Prompt]", text)
    page.get_by_role("button", name="Send").click()


def card_title(page, node_id: str) -> str:
    return page.locator(f"[data-node-id='{node_id}'] .node-title").inner_text().strip()


def open_menu(page, node_id: str):
    page.locator(f".node-row:has([data-node-id='{node_id}']) .node-menu-btn").click()
    page.wait_for_selector("[role=menu]")


@pytest.mark.pi_smoke
def test_stop_and_rename_from_the_roster_end_pi_and_its_tmux(pi_version, spawning_hv, pi_home, tmux_env, fake_llm,
                                                                 page_factory):  # fmt: skip
    hv = spawning_hv(pi_version)
    spawned = spawn(hv, pi_home.cwd)
    node_id, session = spawned["node_id"], spawned["tmux_session"]
    pid = spawned["node"]["pid"]
    assert tmux_has(tmux_env, session) and pid_alive(pid)
    folder = pi_home.cwd.name

    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv) + f"#/agent/{node_id}")
    page.wait_for_selector(f"[data-node-id='{node_id}']", timeout=20_000)
    assert card_title(page, node_id) == folder  # named after its folder until pi names it, never its id

    # rename from the roster: pi's own session name, seen on the card and in the header
    open_menu(page, node_id)
    page.get_by_role("menuitem", name="Rename…").click()
    page.fill("input[aria-label='New session name']", "driver check")
    page.get_by_role("button", name="Rename", exact=True).click()
    page.wait_for_selector("[data-testid=rename-dialog]", state="detached", timeout=15_000)
    wait_until(lambda: card_title(page, node_id) == "driver check", timeout=15, what="the card shows the new name")
    page.wait_for_selector(".stage-title-row .session-name >> text=driver check", timeout=10_000)

    # stop while pi works: asked first; Cancel leaves it running
    page.wait_for_selector("textarea[aria-label=Prompt]:not([disabled])", timeout=20_000)
    fake_llm.slow(words=300, delay=0.1)
    send(page, "work slowly until stopped")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=30_000)
    open_menu(page, node_id)
    page.get_by_role("menuitem", name="Stop agent…").click()
    dialog = page.get_by_role("alertdialog")
    assert "Stop driver check?" in dialog.inner_text()
    shot(page, f"driver-stop-confirm-{pi_version}")
    dialog.get_by_role("button", name="Cancel").click()
    page.wait_for_selector("[role=alertdialog]", state="detached")
    assert tmux_has(tmux_env, session) and pid_alive(pid)

    open_menu(page, node_id)
    page.get_by_role("menuitem", name="Stop agent…").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Stop agent").click()
    # pi exits cleanly: the open conversation says so, the card leaves the roster, tmux and the process are gone
    page.wait_for_selector("[data-testid=exited-banner]", timeout=30_000)
    page.wait_for_selector("[role=alertdialog]", state="detached")
    assert page.locator("[data-testid=exited-tag]").inner_text() == "pi exited"
    page.wait_for_selector(f"[data-node-id='{node_id}']", state="detached", timeout=10_000)
    assert page.locator("text=work slowly until stopped").count() >= 1  # the conversation stays readable
    wait_until(lambda: not tmux_has(tmux_env, session), timeout=20, what=f"tmux session {session} to end")
    wait_until(lambda: not pid_alive(pid), timeout=20, what=f"pi (pid {pid}) to exit")
    assert page.locator("text=w299").count() == 0  # the run was aborted, not waited for
    shot(page, f"driver-stopped-{pi_version}")


def test_a_spawned_agent_shows_its_tmux_attach_command_after_a_reload(spawning_hv, pi_home, tmux_env, page_factory):
    hv = spawning_hv("0.73.1")
    spawned = spawn(hv, pi_home.cwd)
    node_id, session = spawned["node_id"], spawned["tmux_session"]
    assert spawned["node"]["tmux_session"] == session  # the spawn's answer already carries it
    page = page_factory(viewport=WIDE)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(dashboard_url(hv) + f"#/agent/{node_id}")
    page.wait_for_selector("[data-testid=tmux-attach]", timeout=20_000)
    page.reload()  # the roster (the hypivisor) knows it, not this page
    field = page.locator("[data-testid=tmux-cmd]")
    field.wait_for(timeout=20_000)
    assert field.inner_text().strip() == f"tmux attach -t {session}"
    assert f"on {socket.gethostname()}" in page.locator("[data-testid=tmux-where]").inner_text()
    page.get_by_role("button", name="Copy the tmux attach command").click()
    page.wait_for_selector("[data-testid=tmux-attach] >> text=Copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"tmux attach -t {session}"
    assert card_title(page, node_id) == pi_home.cwd.name
    assert node_id not in page.locator(".stage-title-row").inner_text()
    shot(page, "driver-tmux-attach")

    # the command really attaches: tmux knows that session, running pi in the agent's folder
    r = subprocess.run(["tmux", "display-message", "-p", "-t", f"={session}:", "#{pane_current_path}"],
                       env={**os.environ, **tmux_env}, capture_output=True, text=True, timeout=10)  # fmt: skip
    assert r.returncode == 0 and os.path.realpath(r.stdout.strip()) == os.path.realpath(pi_home.cwd)

    phone = page_factory(**PHONE)
    phone.goto(dashboard_url(hv))
    phone.wait_for_selector(f"[data-node-id='{node_id}']", timeout=20_000)
    shot(phone, "driver-phone-roster")
    open_menu(phone, node_id)
    shot(phone, "driver-phone-menu")
    phone.get_by_role("menuitem", name="Stop agent…").tap()
    phone.wait_for_selector("[role=alertdialog]")
    shot(phone, "driver-phone-stop-confirm")
    phone.get_by_role("button", name="Cancel").tap()
    phone.locator(f"[data-node-id='{node_id}']").tap()
    phone.get_by_role("button", name="Show inspector").tap()
    phone.wait_for_selector("[data-testid=tmux-attach]", timeout=20_000)
    phone.wait_for_timeout(400)  # the drawer slides in
    shot(phone, "driver-phone-tmux-attach")


def test_keyboard_moves_between_agents_focuses_opens_the_inbox_aborts_and_lists_its_keys(
    dash_hv, start_pi, fake_llm, page_factory
):
    a = start_pi("0.73.1", mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})
    b = start_pi("0.73.1", mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(dash_hv))
    for n in (a, b):
        page.wait_for_selector(f"[data-node-id='{n.node_id}']", timeout=20_000)
    order = page.eval_on_selector_all("[data-testid=node-card]", "cs => cs.map(c => c.dataset.nodeId)")
    assert sorted(order) == sorted([a.node_id, b.node_id])
    first, second = order

    def at() -> str:
        return page.evaluate("decodeURIComponent(location.hash)")

    page.keyboard.press("]")
    wait_until(lambda: at() == f"#/agent/{first}", timeout=5, what="] opens the first agent")
    page.keyboard.press("]")
    wait_until(lambda: at() == f"#/agent/{second}", timeout=5, what="] moves to the next agent")
    page.keyboard.press("[")
    wait_until(lambda: at() == f"#/agent/{first}", timeout=5, what="[ moves back")

    # c: the composer; there, single keys are text and Alt+↓ still moves
    page.wait_for_selector("textarea[aria-label=Prompt]:not([disabled])", timeout=20_000)
    page.keyboard.press("c")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Prompt"
    page.keyboard.type("[i]?c")
    assert page.input_value("textarea[aria-label=Prompt]") == "[i]?c" and at() == f"#/agent/{first}"
    page.fill("textarea[aria-label=Prompt]", "")
    page.keyboard.press("Alt+ArrowDown")
    wait_until(lambda: at() == f"#/agent/{second}", timeout=5, what="Alt+↓ from the composer")
    page.keyboard.press("Alt+ArrowUp")
    wait_until(lambda: at() == f"#/agent/{first}", timeout=5, what="Alt+↑")

    # Esc outside the composer aborts the open agent's run, as Esc in it does
    page.wait_for_selector("textarea[aria-label=Prompt]:not([disabled])", timeout=20_000)
    fake_llm.slow(words=300, delay=0.1)
    send(page, "stream until Esc")
    page.wait_for_selector(".msg-assistant.is-streaming", timeout=30_000)
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Escape")
    page.wait_for_selector("button[aria-label=Stop]", state="detached", timeout=20_000)
    assert page.locator("text=w299").count() == 0

    # ?: a dialog lists the keys; Tab stays inside, Esc closes it; a click outside closes it too
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    dialog.wait_for()
    text = dialog.inner_text()
    for words in ("Next agent", "Previous agent", "Open the inbox", "Abort", "Alt+↓"):
        assert words in text, words
    shot(page, "driver-keys-overlay")
    page.keyboard.press("]")
    assert at() == f"#/agent/{first}"  # the dialog owns the keyboard
    for _ in range(3):
        page.keyboard.press("Tab")
        assert page.evaluate("!!document.activeElement.closest('[role=dialog]')")
    page.keyboard.press("Escape")
    page.wait_for_selector("[role=dialog]", state="detached")
    page.get_by_role("button", name="Keyboard shortcuts").click()
    dialog.wait_for()
    page.mouse.click(5, 890)
    page.wait_for_selector("[role=dialog]", state="detached")
    page.select_option("select[aria-label=Theme]", "light")
    open_menu(page, first)
    shot(page, "driver-menu-light")
    page.keyboard.press("Escape")
    page.wait_for_selector("[role=menu]", state="detached")
    page.get_by_role("button", name="Keyboard shortcuts").click()
    dialog.wait_for()
    shot(page, "driver-keys-overlay-light")
    page.keyboard.press("Escape")
    page.wait_for_selector("[role=dialog]", state="detached")
    page.select_option("select[aria-label=Theme]", "dark")

    # i: the inbox
    page.keyboard.press("i")
    wait_until(lambda: at() == "#/inbox", timeout=5, what="i opens the inbox")
    page.wait_for_selector("[data-testid=inbox]")
