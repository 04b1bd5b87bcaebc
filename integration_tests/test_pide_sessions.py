"""Pi-DE's past sessions in Chromium (#22, specs/sessions.md): sessions written by real ``pi -p`` runs on the fake
LLM are listed on #/sessions by a real hypivisor (newest first, filtered by folder), opened read-only with the live
conversation's components, searched (hits with the matching words marked, a hit opens the session at its entry),
and resumed: "Continue in a new pi" starts pi on the same file and opens it; asked again while that pi runs, the
page offers the live agent or a fork."""

from __future__ import annotations

import json
import time

import pytest

from integration_tests.harness.pide import dashboard_url, ensure_dist, shot
from integration_tests.test_sessions import hypivisor_for, run_print, session_files

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def agent_id(page) -> str:
    page.wait_for_function("location.hash.startsWith('#/agent/')", timeout=90_000)
    return page.evaluate("decodeURIComponent(location.hash.slice('#/agent/'.length))")


def test_sessions_are_listed_opened_searched_and_resumed(hypivisor_factory, pi_home, start_pi, tmp_path,
                                                         tmux_env, page_factory):  # fmt: skip
    run_print(start_pi, PI, "tell me about the narwhal migration")
    other = pi_home.cwd / "other"
    other.mkdir()
    run_print(start_pi, PI, "and now the walrus colony", cwd=other)
    assert len(session_files(pi_home.agent)) == 2
    hv = hypivisor_for(hypivisor_factory, pi_home, PI, tmp_path, {"HYPI_DASHBOARD_DIR": str(ensure_dist()), **tmux_env})
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv))

    # browse: newest first, with prompt, count and model; the folder filter narrows the list
    page.locator("[data-testid=sessions-link]").click()
    assert page.evaluate("location.hash") == "#/sessions"
    rows = page.locator("[data-testid=session-row]")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    assert "and now the walrus colony" in rows.nth(0).inner_text()
    first = rows.nth(1).inner_text()
    assert "tell me about the narwhal migration" in first and "2 messages" in first and "fake/fake-model" in first
    page.select_option("[data-testid=sessions-folder]", str(other))
    page.wait_for_function("document.querySelectorAll('[data-testid=session-row]').length === 1")
    assert "walrus" in rows.nth(0).inner_text()
    page.select_option("[data-testid=sessions-folder]", "")
    rows.nth(1).wait_for()
    shot(page, "sessions-desktop")

    # open read-only: the live components draw it, there is no composer
    rows.nth(1).locator("button").click()
    page.wait_for_function("location.hash.startsWith('#/session/')")
    past = page.locator("[data-testid=past-session]")
    past.locator("text=You said: tell me about the narwhal migration").wait_for()
    assert past.locator(".msg-user").count() == 1
    assert page.locator("textarea[aria-label=Prompt]").count() == 0
    shot(page, "session-desktop")
    page.go_back()
    assert page.evaluate("location.hash") == "#/sessions"

    # search: hits as the machine answers, the words marked, a hit opens the session at its entry
    page.fill("[data-testid=sessions-search]", "narwhal")
    page.keyboard.press("Enter")
    results = page.locator("[data-testid=search-results][data-done=true]")
    results.wait_for()
    hits = page.locator("[data-testid=search-hit]")
    assert hits.count() == 2
    assert {m.inner_text().lower() for m in page.locator("[data-testid=snippet] mark").all()} == {"narwhal"}
    shot(page, "sessions-search-desktop")
    hits.first.locator("button").click()
    page.wait_for_function("location.hash.startsWith('#/session/') && location.hash.includes('entry=')")
    page.locator("[data-testid=past-session] >> text=narwhal migration").first.wait_for()

    # resume: a new pi on the same file opens; the conversation goes on in the same session
    page.locator("[data-testid=resume-session]").click()
    node_id = agent_id(page)
    page.locator("[data-testid=chat-stage] >> text=You said: tell me about the narwhal migration").wait_for(
        timeout=30_000
    )
    page.fill("textarea[aria-label=Prompt]", "continuing with the narwhal pods")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("text=You said: continuing with the narwhal pods", timeout=30_000)
    assert len(session_files(pi_home.agent)) == 2

    # asked again while it runs: the live agent or a fork, never a second writer
    deadline = time.monotonic() + 30
    while True:
        page.goto(dashboard_url(hv) + "#/sessions")
        page.locator("[data-testid=session-row]").nth(1).wait_for()
        live = page.locator("[data-testid=session-row]:has(.session-live)")
        if live.count() or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert live.count() == 1 and "narwhal" in live.inner_text()
    live.locator("button").click()
    page.locator("[data-testid=session-live]").wait_for()  # the read names the live writer at once
    page.locator("[data-testid=open-live]").click()
    assert agent_id(page) == node_id
    page.go_back()
    page.locator("[data-testid=past-session] >> text=continuing with the narwhal pods").first.wait_for()
    page.locator("[data-testid=resume-session]").click()  # asked anyway: the answer is the live agent, nothing starts
    page.wait_for_function("!document.querySelector('[data-testid=resume-session]').disabled")
    assert page.evaluate("location.hash").startswith("#/session/")
    page.locator("[data-testid=session-live]").wait_for()
    shot(page, "session-live-desktop")
    page.locator("[data-testid=fork-session]").click()
    forked = agent_id(page)
    assert forked != node_id
    page.locator("[data-testid=chat-stage]").wait_for()

    # the phone: the list and a session fill the screen
    phone = page_factory(viewport=PHONE)
    phone.goto(dashboard_url(hv) + "#/sessions")
    phone.locator("[data-testid=session-row]").nth(1).wait_for()
    shot(phone, "sessions-phone")
    phone.locator("[data-testid=session-row]:has-text('narwhal')").first.locator("button").click()
    phone.locator("[data-testid=past-session] >> text=You said: tell me about the narwhal migration").wait_for()
    shot(phone, "session-phone")


def extend_session(path, turns: int, word_at: int, word: str) -> None:
    """Appends ``turns`` user/assistant turns to a real pi session file, in the shapes pi wrote its first turn."""
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    user, reply = [x for x in lines if x["type"] == "message"][-2:]
    parent = reply["id"]
    out = []
    for n in range(turns):
        text = f"turn {n} about the {word}" if n == word_at else f"turn {n} about nothing much"
        for tpl, role_text in ((user, text), (reply, f"You said: {text}")):
            entry = json.loads(json.dumps(tpl))
            entry["id"], entry["parentId"] = f"{len(out):08x}", parent
            entry["message"]["content"] = [{"type": "text", "text": role_text}]
            parent = entry["id"]
            out.append(json.dumps(entry))
    with path.open("a") as f:
        f.write("\n".join(out) + "\n")


def test_a_search_hit_opens_a_long_session_at_its_message_and_pages_both_ways(hypivisor_factory, pi_home, start_pi,
                                                                              tmp_path, page_factory):  # fmt: skip
    run_print(start_pi, PI, "the start of a long one")
    [path] = session_files(pi_home.agent)
    extend_session(path, 150, 40, "quetzal")
    hv = hypivisor_for(hypivisor_factory, pi_home, PI, tmp_path, {"HYPI_DASHBOARD_DIR": str(ensure_dist())})
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv) + "#/sessions")
    assert "302 messages" in page.locator("[data-testid=session-row]").first.inner_text()
    page.fill("[data-testid=sessions-search]", "quetzal")
    page.keyboard.press("Enter")
    page.locator("[data-testid=search-results][data-done=true]").wait_for()
    page.locator("[data-testid=search-hit]:has-text('user')").locator("button").click()

    # the hit's message is in view, the newest ones are not loaded yet
    target = page.locator("[data-testid=message-list] >> text=turn 40 about the quetzal").first
    target.wait_for()
    box, pane = target.bounding_box(), page.locator("[data-testid=message-list]").bounding_box()
    assert pane["y"] <= box["y"] <= pane["y"] + pane["height"], (box, pane)
    assert page.locator("text=turn 149 about nothing much").count() == 0
    shot(page, "session-hit-desktop")
    note = page.locator("[data-testid=history-note]")
    assert "of 302" in note.inner_text()

    # newer pages on demand, older pages on scrolling up, as live history
    assert page.locator("[data-testid=jump-latest]").count() == 0  # nothing loaded counts as new
    deadline = time.monotonic() + 10
    while page.locator("[data-testid=load-newer]").count() and time.monotonic() < deadline:
        if page.locator("[data-testid=load-newer]").is_enabled():
            page.locator("[data-testid=load-newer]").click()
        time.sleep(0.2)
    assert page.locator("[data-testid=load-newer]").count() == 0
    for _ in range(20):
        page.locator("[data-testid=message-list]").evaluate("el => el.scrollTop = 0")
        if page.locator("text=the start of a long one").count():
            break
        time.sleep(0.3)
    page.locator("[data-testid=message-list] >> text=the start of a long one").first.wait_for()
