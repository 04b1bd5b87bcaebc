"""Pi-DE in Chromium against a real hypivisor: roster, connection states, token, themes, mobile, spawn.

Nodes here are registered over the hypivisor's real `/ws` exactly as a bridge registers them
(RegisteredAgent), so every roster event the page sees comes from the real registry. Conversations
with real pi agents are in test_pide_agents.py.
"""

from __future__ import annotations

import sys
import time

import pytest

from integration_tests.harness.hypivisor_proc import free_port
from integration_tests.harness.pide import assistant_msg, dashboard_url, shot, user_msg, wait_until

pytestmark = [pytest.mark.browser]


def card(page, node_id):
    return page.locator(f"[data-node-id='{node_id}']")


def test_roster_groups_by_folder_and_updates_live(dash_hv, agents, page_factory, tmp_path):
    a = agents(dash_hv, "n-a", "/srv/projects/api", session_name="fix login")
    agents(dash_hv, "n-b", "/srv/projects/api", session_name="write docs")  # same folder: both stay listed
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    page.wait_for_selector("[data-node-id='n-b']")
    assert page.locator("[data-testid=node-card]").count() == 2
    assert page.locator("[data-testid=roster-group]").count() == 1

    # a node that joins later appears without a reload, in its own group
    agents(dash_hv, "n-c", "/srv/projects/web", session_name="css")
    page.wait_for_selector("[data-node-id='n-c']")
    assert page.locator("[data-testid=roster-group]").count() == 2
    assert "test-box" not in card(page, "n-a").inner_text()  # one machine: cards do not name it

    # activity and session name arrive as node_updated
    a.update(activity="working", session_name="fix login v2")
    page.wait_for_selector("[data-node-id='n-a'][data-activity='working']")
    assert "fix login v2" in card(page, "n-a").inner_text()
    shot(page, "roster")

    # offline: greyed, tooltip, not selectable
    a.go_offline()
    page.wait_for_selector("[data-node-id='n-a'][data-activity='offline']")
    assert "offline" in card(page, "n-a").get_attribute("title").lower()
    card(page, "n-a").click(force=True)  # aria-disabled: a forced click must still do nothing
    assert page.locator("[data-testid=chat-stage]").count() == 0

    # collapsing a group hides its agents
    page.locator("button.group-head", has_text="api").click()
    assert card(page, "n-b").count() == 0


def test_open_agent_shows_history_inspector_and_user_messages_from_pi(dash_hv, agents, page_factory):
    msgs = [user_msg("first question"), assistant_msg("first answer with `code`")]
    a = agents(dash_hv, "n-1", "/srv/p", messages=msgs, session_name="s1")
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-1").click()
    page.wait_for_selector("text=first answer with")
    inspector = page.locator("[data-testid=inspector]")
    assert "read" in inspector.inner_text() and "/review" in inspector.inner_text()
    assert "fake/fake-model" in inspector.inner_text()
    # a prompt typed in pi's own terminal arrives as message_start/end role user
    a.push(
        {"type": "message_start", "message": user_msg("typed in the TUI")},
        {"type": "message_end", "message": user_msg("typed in the TUI")},
    )
    page.wait_for_selector("[data-role=user] >> text=typed in the TUI")


def test_unknown_agent_protocol_version_shows_a_warning(dash_hv, agents, page_factory):
    agents(dash_hv, "n-v", "/srv/v", messages=[user_msg("hi"), assistant_msg("from the future")], protocol_version="2")
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-v").click()
    page.wait_for_selector("text=from the future")
    page.wait_for_selector(".banner.warn >> text=This agent speaks protocol 2; this Pi-DE speaks 1.1")


def test_switching_agents_never_mixes_conversations(dash_hv, agents, page_factory):
    a = agents(dash_hv, "n-1", "/srv/one", messages=[user_msg("ONE-question"), assistant_msg("ONE-answer")])
    agents(dash_hv, "n-2", "/srv/two", messages=[user_msg("TWO-question"), assistant_msg("TWO-answer")])
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-1").click()
    page.wait_for_selector("text=ONE-answer")
    card(page, "n-2").click()
    page.wait_for_selector("text=TWO-answer")
    # events still streaming on the first agent must not leak into the second's view
    a.push({"type": "message_end", "message": assistant_msg("ONE-late-event")})
    time.sleep(0.5)
    stage = page.locator("[data-testid=chat-stage]").inner_text()
    assert "ONE" not in stage, stage
    # and the old link was closed
    wait_until(lambda: len(a._clients) == 0, 5, what="the first agent's link to close")


def test_history_pages_load_on_scroll_without_duplicates(dash_hv, agents, page_factory):
    msgs = []
    for i in range(300):
        msgs.append(user_msg(f"question {i:03d}") if i % 2 == 0 else assistant_msg(f"answer {i:03d}"))
    a = agents(dash_hv, "n-h", "/srv/h", messages=msgs, init_limit=100)
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-h").click()
    page.wait_for_selector("text=answer 299")
    assert "Showing recent history (100 of 300)" in page.locator("[data-testid=history-note]").inner_text()

    scroller = page.locator("[data-testid=message-list]")
    # the oldest loaded message must stay where the reader left it when a page is prepended
    scroller.evaluate("el => el.scrollTop = 0")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=history-note]')?.innerText.includes('150 of 300')"
    )
    assert a.history_requests[0]["before"] == 200
    page.wait_for_timeout(300)
    top = scroller.evaluate("el => el.scrollTop")
    assert top > 300, f"view jumped to the top after prepending (scrollTop={top})"

    # keep scrolling to the very beginning; every message appears exactly once, in order
    for _ in range(20):
        if (
            a.history_requests
            and a.history_requests[-1]["before"] <= 50
            and "300 of 300" in page.locator("[data-testid=message-list]").evaluate("() => document.body.innerText")
        ):
            break
        scroller.evaluate("el => el.scrollTop = 0")
        page.wait_for_timeout(250)
    befores = [r["before"] for r in a.history_requests]
    assert befores == sorted(set(befores), reverse=True), f"repeated or out-of-order page requests: {befores}"
    assert page.locator("text=question 000").count() == 1


def test_hypivisor_restart_shows_banner_and_recovers(dash_hv, agents, page_factory):
    agents(dash_hv, "n-r", "/srv/r", messages=[user_msg("hello"), assistant_msg("still here")])
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-r").click()
    page.wait_for_selector("text=still here")

    dash_hv.kill()
    page.wait_for_selector("[data-testid=disconnected-banner]")
    assert "Disconnected from hypivisor, reconnecting" in page.locator("[data-testid=disconnected-banner]").inner_text()
    page.wait_for_selector("[data-testid=inline-state] >> text=Connection lost, reconnecting")
    # the conversation stays on screen while the hypivisor is away
    assert page.locator("text=still here").count() == 1
    shot(page, "hypivisor-down")

    dash_hv.start()
    # backoff is capped at 10 s; the agent re-registers within a second of the restart
    page.wait_for_selector("[data-testid=disconnected-banner]", state="detached", timeout=15_000)
    page.wait_for_selector("[data-testid=inline-state]", state="detached", timeout=15_000)
    assert page.locator("text=still here").count() == 1
    assert card(page, "n-r").get_attribute("data-activity") == "idle"


def test_unreachable_hypivisor_shows_error_screen_with_retry(dash_hv, page_factory):
    dead = f"ws://127.0.0.1:{free_port()}"
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv, f"?hypivisor={dead}"))
    page.wait_for_selector("[data-testid=error-screen]")
    text = page.locator("[data-testid=error-screen]").inner_text()
    assert f"{dead}/ws" in text and "Troubleshooting" in text
    shot(page, "error-screen")
    page.get_by_role("button", name="Retry now").click()
    page.wait_for_selector("[data-testid=error-screen]")


def test_token_is_asked_after_401_and_kept(dash_hv_factory, agents, page_factory):
    hv = dash_hv_factory(token="s3cret-tok")
    agents(hv, "n-t", "/srv/t")
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(hv))
    page.wait_for_selector("[data-testid=token-screen]")
    assert "401" in page.locator("[data-testid=token-screen]").inner_text()
    page.fill("input[aria-label=Token]", "s3cret-tok")
    page.get_by_role("button", name="Connect").click()
    page.wait_for_selector("[data-node-id='n-t']")
    key = f"pi-de-token:ws://127.0.0.1:{hv.dashboard_port}"  # stored for this hypivisor only
    assert page.evaluate(f"localStorage.getItem('{key}')") == "s3cret-tok"
    # the token travels as a subprotocol; the agent link through the proxy works with it too
    card(page, "n-t").click()
    page.wait_for_selector("[data-testid=inspector] >> text=fake/fake-model")
    page.reload()
    page.wait_for_selector("[data-node-id='n-t']")  # no prompt the second time
    # a link naming another hypivisor URL does not get this token: it asks, showing where it goes
    other = f"ws://127.0.0.1:{hv.port}"
    page.goto(dashboard_url(hv, f"?hypivisor={other}"))
    # (cross-origin, the page cannot read the 401, so it shows the error screen with a token link)
    page.wait_for_selector("[data-testid=error-screen], [data-testid=token-screen]")
    assert page.locator("[data-testid=roster]").count() == 0
    if page.locator("[data-testid=error-screen]").count():
        assert f"{other}/ws" in page.locator("[data-testid=error-screen]").inner_text()
        page.get_by_role("button", name="Enter the token").click()
    assert f"{other}/ws" in page.locator("[data-testid=token-screen]").inner_text()
    page.fill("input[aria-label=Token]", "s3cret-tok")
    page.get_by_role("button", name="Connect").click()
    page.wait_for_selector("[data-node-id='n-t']")  # the registry port answers too, once given the token


def test_theme_switch_applies_and_persists(dash_hv, agents, page_factory):
    agents(dash_hv, "n-th", "/srv/theme", messages=[user_msg("colours?"), assistant_msg("**bold** and `code`")])
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-th").click()
    page.wait_for_selector("text=colours?")

    def bg():
        return page.evaluate("getComputedStyle(document.body).backgroundColor")

    assert bg() == "rgb(24, 24, 30)"  # pi's dark pageBg
    page.select_option("select[aria-label=Theme]", "solarized-light")
    assert bg() == "rgb(253, 246, 227)"
    shot(page, "theme-solarized-light")
    page.select_option("select[aria-label=Theme]", "gruvbox-dark")
    shot(page, "theme-gruvbox-dark")
    page.reload()
    page.wait_for_selector("[data-node-id='n-th']")
    assert bg() == "rgb(40, 40, 40)"


def test_mobile_one_pane_at_a_time(dash_hv, agents, page_factory):
    agents(dash_hv, "n-m", "/srv/mobile", messages=[user_msg("on the phone"), assistant_msg("reply")])
    page = page_factory(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto(dashboard_url(dash_hv))
    page.wait_for_selector("[data-node-id='n-m']")
    assert card(page, "n-m").bounding_box()["height"] >= 44
    shot(page, "mobile-roster")
    card(page, "n-m").tap()
    page.wait_for_selector("text=on the phone")
    assert not page.locator("aside.sidebar").is_visible()
    for name in ("Back to agents", "Send", "Attach files", "Show inspector"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box["height"] >= 44 and box["width"] >= 44, (name, box)
    # on touch devices Enter is a newline; the button sends
    page.locator("textarea").tap()
    page.keyboard.type("line one")
    page.keyboard.press("Enter")
    page.keyboard.type("line two")
    assert page.locator("textarea").input_value() == "line one\nline two"
    shot(page, "mobile-chat")
    # inspector as a drawer
    page.get_by_role("button", name="Show inspector").tap()
    page.wait_for_timeout(300)
    box = page.locator("[data-testid=inspector]").bounding_box()
    assert box and box["x"] < 390 and box["x"] + box["width"] <= 391
    shot(page, "mobile-inspector")
    page.get_by_role("button", name="Close inspector").tap()
    page.get_by_role("button", name="Back to agents").tap()
    page.wait_for_selector("[data-node-id='n-m']")


SPAWN_STANDIN = """
import asyncio, json, os, sys, websockets
async def main():
    async with websockets.connect(os.environ["HYPIVISOR_WS"]) as ws:
        await ws.send(json.dumps({"id": "r", "method": "register", "params": {
            "id": "spawned-1", "machine": "test-box", "cwd": os.getcwd(), "port": 9, "pid": os.getpid(),
            "spawn_id": os.environ.get("PI_SOCKET_SPAWN_ID")}}))
        await asyncio.wait_for(ws.wait_closed(), 60)  # gone with its hypivisor, as a pi's bridge would be
asyncio.run(main())
"""


def test_spawn_modal_browses_reports_errors_and_deploys(dash_hv_factory, page_factory, tmp_path):
    # The hypivisor's command template stands in for `pi` here; test_pide_agents.py spawns real pi.
    home = tmp_path / "home"
    (home / "projects" / "alpha").mkdir(parents=True)
    (home / "notes").mkdir()
    script = tmp_path / "standin.py"
    script.write_text(SPAWN_STANDIN)
    hv = dash_hv_factory(
        home=home, env={"HYPI_SPAWN_COMMAND": f"{sys.executable} {script}", "HYPI_SPAWN_TIMEOUT": "15"}
    )
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(hv))
    page.get_by_role("button", name="+ Spawn agent").click()
    modal = page.locator("[data-testid=spawn-modal]")
    modal.locator("text=projects").click()
    page.wait_for_selector("[data-testid=spawn-path] >> text=~/projects")
    modal.locator("text=alpha").wait_for()
    modal.locator("text=parent folder").click()
    page.wait_for_selector("[data-testid=spawn-path] >> text=/^~$/")
    modal.locator("text=projects").click()
    page.wait_for_selector("[data-testid=spawn-path] >> text=~/projects")
    shot(page, "spawn-modal")

    # an invalid folder name is refused by the hypivisor; the modal shows why and stays open
    page.fill("input[aria-label='New folder name']", "../escape")
    page.get_by_role("button", name="Deploy agent here").click()
    page.wait_for_selector("[data-testid=spawn-error]")
    assert modal.is_visible()
    assert not (home / "escape").exists()

    page.fill("input[aria-label='New folder name']", "beta")
    page.get_by_role("button", name="Deploy agent here").click()
    try:
        page.wait_for_selector("[data-testid=spawn-modal]", state="detached", timeout=20_000)
    except Exception as exc:
        shot(page, "spawn-failed")
        raise AssertionError(f"spawn did not finish: {modal.inner_text()}\n{hv.stderr()[-2000:]}") from exc
    assert (home / "projects" / "beta").is_dir()
    page.wait_for_selector("[data-node-id='spawned-1']")
    assert "beta" in page.locator("[data-testid=roster]").inner_text()


def test_composer_autocomplete_attachments_and_rich_messages(dash_hv, agents, page_factory, tmp_path):
    edit_call = {
        "type": "toolCall",
        "id": "e1",
        "name": "edit",
        "arguments": {"path": "src/main.ts", "edits": [{"oldText": "const a = 1;", "newText": "const a = 2;"}]},
    }
    msgs = [
        user_msg("change a to 2"),
        {
            "role": "assistant",
            "stopReason": "toolUse",
            "content": [
                {"type": "thinking", "thinking": "The constant lives in src/main.ts."},
                {"type": "text", "text": "Editing `src/main.ts`."},
                edit_call,
            ],
        },
        {
            "role": "toolResult",
            "toolCallId": "e1",
            "toolName": "edit",
            "isError": False,
            "content": [{"type": "text", "text": "Successfully replaced 1 block"}],
            "details": {"diff": " 1 import x from 'y';\n-2 const a = 1;\n+2 const a = 2;\n 3 export { a };"},
        },
        assistant_msg("Done: `a` is now **2**."),
    ]
    a = agents(dash_hv, "n-c", "/srv/compose", messages=msgs)
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-c").click()
    page.wait_for_selector("text=is now")

    # edit card with pi's diff; thinking collapsed until opened
    diff = page.locator("[data-tool=edit] .diff")
    assert diff.locator(".diff-del").inner_text().strip() == "-2 const a = 1;"
    assert diff.locator(".diff-add").inner_text().strip() == "+2 const a = 2;"
    assert not page.locator(".thinking-text").is_visible()
    page.locator(".thinking summary").click()
    assert page.locator(".thinking-text").is_visible()

    ta = page.locator("textarea[aria-label=Prompt]")
    # "/" lists the agent's commands; arrows move, Enter inserts
    ta.fill("/re")
    page.wait_for_selector("[data-testid=autocomplete] >> text='/release'")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert ta.input_value() == "/release "
    # the completion is applied (its list closed) before the next text is typed, as a person's next keystroke is
    page.wait_for_selector("[data-testid=autocomplete]", state="detached")
    # "@" lists files by prefix; a directory keeps completing
    ta.fill("look at @s")
    page.wait_for_selector("[data-testid=autocomplete] >> text=src/")
    shot(page, "autocomplete")
    page.keyboard.press("Enter")
    assert ta.input_value() == "look at @src/"
    page.wait_for_selector("[data-testid=autocomplete] >> text=src/main.ts")
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=autocomplete]", state="detached")

    # attachments by picker go out base64-encoded in the prompt
    note = tmp_path / "notes.txt"
    note.write_text("attached text")
    page.set_input_files("input[type=file]", str(note))
    page.wait_for_selector("[data-testid=attachment] >> text=notes.txt")
    ta.fill("see the attachment")
    page.get_by_role("button", name="Send").click()
    prompt = wait_until(lambda: next((f for f in a.received if f.get("type") == "prompt"), None), what="the prompt")
    assert prompt["text"] == "see the attachment"
    import base64

    assert prompt["attachments"] == [
        {"name": "notes.txt", "mime_type": "text/plain", "data": base64.b64encode(b"attached text").decode()}
    ]
    # acked, waiting for pi's echo: shown as queued, once
    page.wait_for_selector("[data-role=pending][data-state=acked]")
    shot(page, "rich-conversation")

    # paste an image into the prompt, drop a text file on the stage
    page.evaluate("""() => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array([137, 80, 78, 71])], 'shot.png', {type: 'image/png'}));
      document.querySelector('textarea').dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
      const dt2 = new DataTransfer();
      dt2.items.add(new File(['dropped text'], 'drop.md', {type: 'text/markdown'}));
      document.querySelector('[data-testid=chat-stage]').dispatchEvent(new DragEvent('drop', {dataTransfer: dt2, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_selector("[data-testid=attachment] >> text=shot.png")
    page.wait_for_selector("[data-testid=attachment] >> text=drop.md")
    ta.fill("two more")
    page.get_by_role("button", name="Send").click()
    second = wait_until(lambda: [f for f in a.received if f.get("type") == "prompt"][1:], what="the second prompt")[0]
    assert [(x["name"], x["mime_type"]) for x in second["attachments"]] == [
        ("shot.png", "image/png"),
        ("drop.md", "text/markdown"),
    ]
    assert base64.b64decode(second["attachments"][1]["data"]) == b"dropped text"

    # on a desktop, Shift+Enter is a newline and Enter sends
    ta.fill("")
    ta.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    page.keyboard.press("Enter")
    third = wait_until(lambda: [f for f in a.received if f.get("type") == "prompt"][2:], what="the third prompt")[0]
    assert third["text"] == "line one\nline two" and "attachments" not in third
    assert ta.input_value() == ""


NOTIFICATION_SPY = """
// The tab is "hidden" and notifications are allowed; Notification records what it is asked to show.
Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});
window.__notes = [];
window.Notification = class { constructor(title, o) { window.__notes.push({title, body: o && o.body}); } };
window.Notification.permission = 'granted';
window.Notification.requestPermission = async () => 'granted';
"""


def test_hidden_tab_notifies_when_a_run_ends_and_offline_agent_waits(dash_hv, agents, page_factory):
    a = agents(dash_hv, "n-n", "/srv/notify", messages=[user_msg("hi"), assistant_msg("hello")])
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.add_init_script(NOTIFICATION_SPY)
    page.goto(dashboard_url(dash_hv))
    card(page, "n-n").click()
    page.wait_for_selector("text=hello")
    a.push(
        {"type": "agent_start"},
        {"type": "message_start", "message": {"role": "assistant", "content": []}},
        {"type": "message_end", "message": assistant_msg("all tests pass")},
        {"type": "agent_end", "messages": []},
    )
    page.wait_for_function("() => window.__notes.length === 1", timeout=5_000)
    note = page.evaluate("window.__notes[0]")
    assert note == {"title": "notify: done", "body": "all tests pass"}
    a.push(
        {"type": "agent_start"},
        {"type": "message_end", "message": assistant_msg("", stopReason="error", errorMessage="rate limited")},
        {"type": "agent_end", "messages": []},
    )
    page.wait_for_function("() => window.__notes.length === 2", timeout=5_000)
    assert page.evaluate("window.__notes[1]") == {"title": "notify: run failed", "body": "rate limited"}

    # the registry reports the agent offline: the stage says so and stops dialling it
    a.go_offline()
    page.wait_for_selector("[data-testid=inline-state] >> text=Agent offline, waiting for it to come back")
    wait_until(lambda: len(a._clients) == 0, 5, what="the link to an offline agent to close")
    assert page.locator("text=all tests pass").count() == 1
    # …and when it comes back, the link is re-opened by itself
    a.come_back()
    page.wait_for_selector("[data-testid=inline-state]", state="detached")
    wait_until(lambda: len(a._clients) == 1, 10, what="the link to reopen")


AT_BOTTOM = """() => { const el = document.querySelector('[data-testid=message-list]');
  return el.scrollHeight - el.scrollTop - el.clientHeight < 80; }"""


@pytest.mark.parametrize(
    "viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"]
)
def test_jump_to_latest_counts_new_messages_and_sending_scrolls_down(dash_hv, agents, page_factory, viewport):
    history = []
    for i in range(30):
        history += [user_msg(f"question {i}"), assistant_msg(f"answer {i}: " + "lorem ipsum dolor sit amet " * 6)]
    a = agents(dash_hv, "n-j", "/srv/jump", messages=history)
    phone = viewport["width"] < 600
    page = page_factory(viewport=viewport, has_touch=phone, is_mobile=phone)
    page.goto(dashboard_url(dash_hv))
    card(page, "n-j").click()
    page.wait_for_selector("text=answer 29")
    page.wait_for_function(AT_BOTTOM)
    assert page.locator("[data-testid=jump-latest]").count() == 0

    # scrolled up, three replies arrive: the button counts them; the view stays where the reader is
    page.locator("[data-testid=message-list]").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_selector("text=question 0")
    a.push(*[{"type": "message_end", "message": assistant_msg(f"news {i}")} for i in range(3)], delay=0.05)
    jump = page.locator("[data-testid=jump-latest]")
    jump.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=jump-latest]')?.innerText === 'Jump to latest (3 new)'"
    )
    assert page.locator("text=question 0").is_visible()
    box = jump.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] and box["height"] >= 44
    shot(page, f"jump-to-latest-{'phone' if phone else 'desktop'}")

    # the button takes the reader to the newest message and goes away
    jump.click()
    page.wait_for_function(AT_BOTTOM)
    page.wait_for_selector("text=news 2")
    jump.wait_for(state="detached")

    # scrolled up again, the reader sends: the view goes to the bottom to show the prompt
    page.locator("[data-testid=message-list]").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_selector("text=question 0")
    page.fill("textarea[aria-label=Prompt]", "a prompt from far up")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(AT_BOTTOM)
    page.wait_for_selector("[data-role=pending] >> text=a prompt from far up")
    assert page.locator("[data-role=pending]").is_visible()
    assert page.locator("[data-testid=jump-latest]").count() == 0


CONTRASTS = """() => {
  const rgb = (s) => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = c.map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
                       return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x); return (hi + 0.05) / (lo + 0.05); };
  const out = {};
  for (const sel of ['.diff-add', '.diff-del', '.diff-ctx', '[data-tool=bash] .tool-output', '.tool-name']) {
    const el = document.querySelector(sel);
    const bg = getComputedStyle(el.closest('.tool-card')).backgroundColor;
    out[sel] = ratio(rgb(getComputedStyle(el).color), rgb(bg));
  }
  return out;
}"""


def test_diff_and_tool_output_reach_wcag_aa_in_every_theme(dash_hv, agents, page_factory):
    diff = " 1 import x from 'y';\n-2 const a = 1;\n+2 const a = 2;\n 3 export { a };"
    edit = {"type": "toolCall", "id": "e1", "name": "edit", "arguments": {"path": "src/main.ts", "edits": []}}
    bash = {"type": "toolCall", "id": "b1", "name": "bash", "arguments": {"command": "ls"}}
    msgs = [
        user_msg("edit and list"),
        {"role": "assistant", "stopReason": "toolUse", "content": [edit, bash]},
        {
            "role": "toolResult",
            "toolCallId": "e1",
            "toolName": "edit",
            "isError": False,
            "content": [{"type": "text", "text": "Successfully replaced 1 block"}],
            "details": {"diff": diff},
        },
        {
            "role": "toolResult",
            "toolCallId": "b1",
            "toolName": "bash",
            "isError": False,
            "content": [{"type": "text", "text": "README.md\nsrc"}],
        },
        assistant_msg("Done."),
    ]
    agents(dash_hv, "n-diff", "/srv/diff", messages=msgs)
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    card(page, "n-diff").click()
    page.wait_for_selector("[data-tool=edit] .diff-del")
    page.wait_for_selector("[data-tool=bash] .tool-output")
    shot(page, "diff-dark")
    low = {}
    for theme in page.locator("select[aria-label=Theme] option").evaluate_all("os => os.map((o) => o.value)"):
        page.select_option("select[aria-label=Theme]", theme)
        for sel, ratio in page.evaluate(CONTRASTS).items():
            if ratio < 4.5:
                low[f"{theme} {sel}"] = round(ratio, 2)
    assert low == {}
