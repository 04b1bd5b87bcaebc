"""Pi-DE as a daily driver, in Chromium against a real hypivisor and real pi agents (fake LLM).

* Every screen has a URL: Back and Forward move between agents and the spawn dialog, a reload reopens
  the agent, an unknown id says so, the inbox's URL is reserved.
* An agent whose pi exits says so, keeps its conversation readable, refuses prompts, and resumes the
  same session in a new pi (``spawn_agent`` with ``session_file``: ``pi --session`` in tmux).
* Cards and the header show what a person uses (git branch, idle/working time; the machine only when
  there are several), the inspector can be hidden (remembered), and there is a favicon.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from integration_tests.harness.pi_proc import pi_bin
from integration_tests.harness.pide import assistant_msg, dashboard_url, shot, user_msg

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}


def send(page, text):
    page.fill("textarea[aria-label=Prompt]", text)
    page.get_by_role("button", name="Send").click()


def hash_of(page) -> str:
    return page.evaluate("location.hash")


def set_theme(page, name):
    page.select_option("select[aria-label=Theme]", name)


def stage_title(page) -> str:
    return page.locator("[data-testid=chat-stage] .stage-title-row strong").inner_text()


def test_every_screen_has_a_url_back_forward_reload_and_unknown_ids(dash_hv, start_pi, agents, page_factory):
    pi = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})
    agents(dash_hv, "n-docs", "/srv/projects/docs", session_name="write docs", machine=socket.gethostname(),
           messages=[user_msg("docs question"), assistant_msg("docs answer")])  # fmt: skip
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(dash_hv))
    page.click(f"[data-node-id='{pi.node_id}']", timeout=20_000)
    assert hash_of(page) == f"#/agent/{pi.node_id}"
    send(page, "remember the url test")
    page.wait_for_selector("text=You said: remember the url test", timeout=30_000)

    page.click("[data-node-id='n-docs']")
    page.wait_for_selector("text=docs answer")
    assert hash_of(page) == "#/agent/n-docs"
    page.get_by_role("button", name="+ Spawn agent").click()
    page.wait_for_selector("[data-testid=spawn-modal]")
    assert hash_of(page) == "#/spawn"

    # Back: the dialog closes, then the previous agent; Forward walks the same way again
    page.go_back()
    page.wait_for_selector("[data-testid=spawn-modal]", state="detached")
    assert hash_of(page) == "#/agent/n-docs" and page.locator("text=docs answer").count() == 1
    page.go_back()
    page.wait_for_selector("text=You said: remember the url test", timeout=15_000)
    assert hash_of(page) == f"#/agent/{pi.node_id}"
    page.go_forward()
    page.wait_for_selector("text=docs answer")
    page.go_forward()
    page.wait_for_selector("[data-testid=spawn-modal]")
    page.keyboard.press("Escape")  # closing the dialog goes back to where it was opened
    page.wait_for_selector("[data-testid=spawn-modal]", state="detached")
    assert hash_of(page) == "#/agent/n-docs"

    # a reload (or a bookmark) reopens the agent with its conversation
    page.goto(dashboard_url(dash_hv) + f"#/agent/{pi.node_id}")
    page.reload()
    page.wait_for_selector("text=You said: remember the url test", timeout=20_000)
    assert page.locator(f"[data-node-id='{pi.node_id}'].selected").count() == 1
    shot(page, "daily-url-reloaded")

    # an id this hypivisor does not know: said plainly, with a way back
    page.goto(dashboard_url(dash_hv) + "#/agent/no-such-node")
    page.wait_for_selector("[data-testid=no-such-agent] >> text=No such agent")
    assert "no-such-node" in page.locator("[data-testid=no-such-agent]").inner_text()
    shot(page, "daily-no-such-agent")
    page.get_by_role("button", name="Show all agents").click()
    assert hash_of(page) in ("#/", "")
    page.wait_for_selector("text=Select an agent on the left")

    page.goto(dashboard_url(dash_hv) + "#/inbox")
    page.wait_for_selector("[data-testid=inbox]")

    # the phone's Back gesture moves between screens inside the app
    phone = page_factory(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.goto(dashboard_url(dash_hv))
    phone.locator("[data-node-id='n-docs']").tap()
    phone.wait_for_selector("text=docs answer")
    phone.go_back()
    phone.wait_for_selector("[data-node-id='n-docs']")
    assert phone.locator("[data-testid=chat-stage]").count() == 0 and hash_of(phone) in ("#/", "")
    # opened straight on an agent, the in-app back arrow still stays in the app
    phone.goto(dashboard_url(dash_hv) + "#/agent/n-docs")
    phone.wait_for_selector("text=docs answer")
    phone.get_by_role("button", name="Back to agents").tap()
    phone.wait_for_selector("[data-node-id='n-docs']")
    assert phone.url.startswith(dashboard_url(dash_hv))


def test_pi_exit_is_said_and_resume_opens_the_same_session_in_a_new_pi(
    dash_hv_factory, pi_home, start_pi, fake_llm, tmux_env, tmp_path, page_factory
):
    # The hypivisor spawns with real tmux (no template): `pi` on its PATH is the pinned pi, PI_* settings (the
    # agent dir with the shim, the fake LLM) pass through. Its HOME holds pi's folder and its session files.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pi").symlink_to(pi_bin(PI))
    pi_env = {k: v for k, v in pi_home.env.items() if k.startswith("PI_")}
    hv = dash_hv_factory(home=pi_home.root, env={**pi_env, **tmux_env, "PATH": f"{bindir}:{os.environ['PATH']}",
                                                  "HYPI_SPAWN_TIMEOUT": "40"})  # fmt: skip
    pi = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": hv.ws_url})
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv) + f"#/agent/{pi.node_id}")
    page.wait_for_selector("[data-testid=inspector] .mono >> text=bash", timeout=20_000)
    send(page, "remember apple-42")
    page.wait_for_selector("text=You said: remember apple-42", timeout=30_000)
    folder = stage_title(page)
    assert folder == pi_home.cwd.name

    pi.stop()  # pi quits: its bridge deregisters (not a lost link)
    page.wait_for_selector("[data-testid=exited-banner] >> text=/pi exited at \\d\\d:\\d\\d/", timeout=15_000)
    assert stage_title(page) == folder  # not the raw node id
    assert page.locator("[data-testid=exited-tag]").inner_text() == "pi exited"
    assert page.locator("[data-testid=chat-stage] .stage-title-row .dot.off").count() == 1
    assert page.locator("[data-testid=inline-state]").count() == 0  # nothing is "waiting to come back"
    assert page.locator("text=You said: remember apple-42").count() == 1  # the conversation stays readable
    assert page.locator("textarea[aria-label=Prompt]").is_disabled()
    assert page.get_by_role("button", name="Send").is_disabled()
    assert "Resume it in a new pi" in page.locator("[data-testid=composer-disabled]").inner_text()
    shot(page, "daily-pi-exited")
    set_theme(page, "light")
    shot(page, "daily-pi-exited-light")
    set_theme(page, "dark")

    page.get_by_role("button", name="Resume in a new pi").click()
    page.wait_for_function(f"() => location.hash.startsWith('#/agent/') && location.hash !== '#/agent/{pi.node_id}'",
                           timeout=60_000)  # fmt: skip
    new_id = page.evaluate("decodeURIComponent(location.hash.slice('#/agent/'.length))")
    page.wait_for_selector("[data-testid=exited-banner]", state="detached")
    # the resumed pi shows the same session: the earlier exchange, then it answers with that history
    page.wait_for_selector("text=You said: remember apple-42", timeout=30_000)
    assert stage_title(page) == folder
    send(page, "what did I ask you to remember?")
    page.wait_for_selector("text=You said: what did I ask you to remember?", timeout=30_000)
    last = fake_llm.requests()[-1]
    texts = [str(m.get("content")) for m in last.get("messages", []) if m.get("role") == "user"]
    assert any("remember apple-42" in t for t in texts), texts  # pi sent the resumed history to the model
    card = page.locator(f"[data-node-id='{new_id}']")
    assert card.count() == 1 and folder in card.inner_text()
    shot(page, "daily-resumed")


def test_cards_show_branch_and_times_the_inspector_hides_and_there_is_a_favicon(
    dash_hv, start_pi, pi_home, agents, page_factory
):
    subprocess.run(["git", "init", "-q", "-b", "feature/daily"], cwd=pi_home.cwd, check=True, timeout=10)
    pi = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})
    agents(dash_hv, "n-docs", "/srv/projects/docs", session_name="write docs", machine=socket.gethostname())
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(dash_hv))
    card = page.locator(f"[data-node-id='{pi.node_id}']")
    page.wait_for_selector(f"[data-node-id='{pi.node_id}'] [data-testid=branch] >> text=feature/daily", timeout=20_000)
    text = card.inner_text()
    assert "idle" in card.locator("[data-testid=activity-time]").inner_text()
    assert f":{pi.port}" not in text and "pid" not in text  # what a person uses, not sockets and processes
    assert socket.gethostname() not in text  # one machine: not named on every card
    assert f"{pi.port}" in card.get_attribute("title")  # still there for whoever needs it

    card.click()
    page.wait_for_selector("[data-testid=inspector] .mono >> text=bash", timeout=20_000)
    assert "feature/daily" in page.locator("[data-testid=stage-branch]").inner_text()
    assert f":{pi.port}" not in page.locator(".stage-sub").inner_text()
    for theme in ("dark", "light"):
        set_theme(page, theme)
        shot(page, f"daily-wide-{theme}")

    # the inspector: hidden on request, and still hidden after a reload
    stage_width = page.locator("[data-testid=chat-stage]").bounding_box()["width"]
    page.get_by_role("button", name="Hide inspector").click()
    page.wait_for_selector("[data-testid=inspector]", state="hidden")
    assert page.locator("[data-testid=chat-stage]").bounding_box()["width"] >= stage_width + 290
    page.reload()
    page.wait_for_selector("[data-testid=chat-stage]")
    page.wait_for_selector("[data-testid=inspector]", state="hidden")
    shot(page, "daily-inspector-hidden")
    page.get_by_role("button", name="Show inspector").click()
    page.wait_for_selector("[data-testid=inspector]", state="visible")

    # a favicon: the page links one, and /favicon.ico (what browsers ask for by themselves) is served
    for path, kind in (("/favicon.ico", "image/"), ("/favicon.svg", "image/svg")):
        r = page.request.get(dashboard_url(dash_hv).rstrip("/") + path)
        assert r.status == 200 and r.headers["content-type"].startswith(kind), (path, r.status, r.headers)
    assert page.locator("link[rel=icon]").count() == 1

    phone = page_factory(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.goto(dashboard_url(dash_hv))
    phone.wait_for_selector(f"[data-node-id='{pi.node_id}'] [data-testid=branch]", timeout=20_000)
    for theme in ("dark", "light"):
        set_theme(phone, theme)
        shot(phone, f"daily-phone-roster-{theme}")
        phone.locator(f"[data-node-id='{pi.node_id}']").tap()
        phone.wait_for_selector("[data-testid=inspector] .mono >> text=bash", state="attached", timeout=20_000)
        assert "feature/daily" in phone.locator("[data-testid=stage-branch]").inner_text()
        shot(phone, f"daily-phone-agent-{theme}")
        phone.get_by_role("button", name="Back to agents").tap()
        phone.wait_for_selector("select[aria-label=Theme]")
