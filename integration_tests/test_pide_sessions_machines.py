"""Pi-DE's past sessions of two machines in Chromium (#22, specs/sessions.md): two machine services (alpha, beta)
with sessions written by real ``pi -p`` runs (fake LLM), plus a session with a ``/tree`` branch and its fork
written by real pi (the test fixtures) on alpha. #/sessions lists both machines' sessions merged; a search finds
hits on both machines; the role filter keeps one role; a past session's branch switcher shows the other branch and
its fork links to its parent; "Continue in a new pi" on beta starts pi there and opens it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.machines import machines_fixture  # noqa: F401 - the `machines` fixture
from integration_tests.harness.pide import dashboard_url, ensure_dist, shot
from integration_tests.harness.spawn import NEEDS_TMUX
from integration_tests.test_sessions_machines import WORDS, files_of, listed, make_machine, run_print, wait_online

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

WIDE = {"width": 1440, "height": 900}
FIXTURES = Path(__file__).resolve().parents[1] / "pi_socket" / "tests" / "fixtures" / "sessions" / "1.6.0"


@NEEDS_TMUX
def test_two_machines_browse_search_by_role_tree_and_resume(hypivisor_factory, machines, pi_home, start_pi, fake_llm,
                                                            page_factory):  # fmt: skip
    hv = hypivisor_factory(env={"PI_SOCKET_MACHINE": "hub", "HYPI_SPAWN_TIMEOUT": "40",
                                                           "HYPI_DASHBOARD_DIR": str(ensure_dist())})  # fmt: skip
    a, b = make_machine(machines, hv, pi_home, "alpha"), make_machine(machines, hv, pi_home, "beta")
    for m in (a, b):
        run_print(start_pi, m, f"tell me about the {WORDS[m.name]} and the platypus")
    for f in FIXTURES.glob("*.jsonl"):  # pi 1.6.0's session with a /tree branch, and its fork
        shutil.copy(f, a.home / "sessions" / f.name)
    a.start()
    b.start()

    async def ready() -> None:
        async with await RegistryClient.connect(hv) as dash:
            await wait_online(dash, {"alpha", "beta"})
            assert len(await listed(dash, "alpha", 3)) == 3
            assert len(await listed(dash, "beta", 1)) == 1

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # playwright's sync API holds this thread's loop
        pool.submit(asyncio.run, ready()).result(timeout=90)
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv) + "#/sessions")

    # browse: every online machine's sessions, merged newest first, each row naming its machine
    rows = page.locator("[data-testid=session-row]")
    page.wait_for_function("document.querySelectorAll('[data-testid=session-row]').length === 4", timeout=20_000)
    assert {rows.nth(i).get_attribute("data-machine") for i in range(4)} == {"alpha", "beta"}
    assert "beta ·" in page.locator("[data-testid=session-row][data-machine=beta]").inner_text()
    page.select_option("[data-testid=sessions-machine]", "beta")
    page.wait_for_function("document.querySelectorAll('[data-testid=session-row]').length === 1")
    assert "okapi" in rows.first.inner_text()
    page.select_option("[data-testid=sessions-machine]", "")
    page.wait_for_function("document.querySelectorAll('[data-testid=session-row]').length === 4")
    shot(page, "sessions-machines-desktop")

    # search: one word on both machines, hits from each
    page.fill("[data-testid=sessions-search]", "platypus")
    page.keyboard.press("Enter")
    page.locator("[data-testid=search-results][data-done=true]").wait_for(timeout=20_000)
    hits = page.locator("[data-testid=search-hit]")
    assert {hits.nth(i).get_attribute("data-machine") for i in range(hits.count())} == {"alpha", "beta"}
    # the role filter: the prompt (user) only, then the tool's output only
    page.select_option("[data-testid=sessions-role]", "user")
    page.fill("[data-testid=sessions-search]", "aardvark")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(() => { const r = document.querySelector('[data-testid=search-results]');"
        " return r && r.dataset.done === 'true' && document.querySelectorAll('[data-testid=search-hit]').length > 0 })()"
    )
    assert {hits.nth(i).get_attribute("data-role") for i in range(hits.count())} == {"user"}
    page.select_option("[data-testid=sessions-role]", "tool")
    page.fill("[data-testid=sessions-search]", "fixture-tool-output")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(() => { const r = document.querySelector('[data-testid=search-results]');"
        " return r && r.dataset.done === 'true' && document.querySelectorAll('[data-testid=search-hit]').length > 0 })()"
    )
    assert {hits.nth(i).get_attribute("data-role") for i in range(hits.count())} == {"tool"}
    assert {hits.nth(i).get_attribute("data-machine") for i in range(hits.count())} == {"alpha"}
    shot(page, "sessions-search-role-desktop")

    # the tree: the session with a /tree branch opens on pi's branch; the switcher shows the other one
    page.select_option("[data-testid=sessions-role]", "")
    page.get_by_role("button", name="Clear").click()
    page.locator("[data-testid=session-row]:has-text('Fixture session')").locator("button").click()
    past = page.locator("[data-testid=past-session]")
    page.locator("[data-testid=message-list] >> text=a branch prompt about zebras").first.wait_for()
    options = page.locator("[data-testid=branch-option]")
    assert options.count() == 2 and options.nth(1).get_attribute("aria-pressed") == "true"
    options.nth(0).click()
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=branch-option]')[0]?.getAttribute('aria-pressed') === 'true'"
    )
    messages = page.locator("[data-testid=message-list]")
    messages.locator("text=elephants").first.wait_for()
    assert messages.locator("text=a branch prompt about zebras").count() == 0  # (the switcher still names it)
    shot(page, "session-branches-desktop")
    # its fork, and from the fork back to the parent
    page.locator("[data-testid=session-forks] a").first.click()
    past.locator("text=in the fork about penguins").first.wait_for()
    page.locator("[data-testid=session-parent] a").click()
    page.locator("[data-testid=session-forks]").wait_for()
    assert "machine=alpha" in page.evaluate("location.hash")

    # resume on beta: pi starts there, on the same file, and the view becomes the live agent
    page.goto(dashboard_url(hv) + "#/sessions")
    page.locator("[data-testid=session-row][data-machine=beta]").locator("button").click()
    page.locator("[data-testid=past-session] >> text=okapi").first.wait_for()
    page.locator("[data-testid=resume-session]").click()
    page.wait_for_function("location.hash.startsWith('#/agent/')", timeout=90_000)
    page.locator("[data-testid=chat-stage] >> text=tell me about the okapi").first.wait_for(timeout=30_000)
    page.fill("textarea[aria-label=Prompt]", "continuing the okapi on beta")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("text=You said: continuing the okapi on beta", timeout=30_000)
    [original] = files_of(b)
    assert "continuing the okapi on beta" in original.read_text()
