"""Pi-DE's date filter on #/sessions in Chromium (#22, specs/sessions.md §9): two sessions written by real ``pi -p``
runs on the fake LLM, one moved 40 days back (its entries' timestamps), listed and searched by a real hypivisor.
The quick choices and the From/To days narrow the list and the search; From after To is said and nothing is
asked. On a phone the filters fold behind a "Filters" toggle so the list starts high on the screen."""

from __future__ import annotations

import datetime

import pytest

from integration_tests.harness.pide import dashboard_url, ensure_dist, shot
from integration_tests.test_sessions import hypivisor_for, run_print, session_files, shift_times

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def test_the_date_filter_narrows_the_list_and_the_search(hypivisor_factory, pi_home, start_pi, tmp_path,
                                                          page_factory):  # fmt: skip
    run_print(start_pi, PI, "the otter of last month")
    old = session_files(pi_home.agent)[0]
    shift_times(old, 40)
    run_print(start_pi, PI, "the otter of today")
    hv = hypivisor_for(hypivisor_factory, pi_home, PI, tmp_path, {"HYPI_DASHBOARD_DIR": str(ensure_dist())})
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv) + "#/sessions")
    rows = page.locator("[data-testid=session-row]")
    rows.nth(1).wait_for()
    count = "n => document.querySelectorAll('[data-testid=session-row]').length === n"

    # quick choices: the last 7 days hold today's session only; any time, both again
    page.locator("[data-testid=sessions-dates-7d]").click()
    page.wait_for_function(count, arg=1)
    assert "the otter of today" in rows.nth(0).inner_text()
    assert page.locator("[data-testid=sessions-dates-7d]").get_attribute("aria-pressed") == "true"
    page.locator("[data-testid=sessions-dates-any]").click()
    page.wait_for_function(count, arg=2)

    # From and To days (the browser's local days) around the old session
    then = (datetime.datetime.now() - datetime.timedelta(days=40)).date()
    page.fill("[data-testid=sessions-from]", (then - datetime.timedelta(days=1)).isoformat())
    page.fill("[data-testid=sessions-to]", (then + datetime.timedelta(days=1)).isoformat())
    page.wait_for_function(count, arg=1)
    assert "the otter of last month" in rows.nth(0).inner_text()
    shot(page, "sessions-dates-desktop")

    # the search takes the same days, and another choice searches again
    page.fill("[data-testid=sessions-search]", "otter")
    page.keyboard.press("Enter")
    page.locator("[data-testid=search-results][data-done=true]").wait_for()
    hits = page.locator("[data-testid=search-hit]")
    assert hits.count() == 2 and all("last month" in h.inner_text() for h in hits.all())
    page.locator("[data-testid=sessions-dates-today]").click()
    page.wait_for_function(
        "() => { const r = document.querySelector('[data-testid=search-results][data-done=true]');"
        " return r && [...r.querySelectorAll('[data-testid=search-hit]')].every(h => h.innerText.includes('of today'))"
        " && r.querySelectorAll('[data-testid=search-hit]').length === 2 }"
    )

    # From after To: said, and the list is not asked
    page.locator("[data-testid=sessions-search]").fill("")
    page.get_by_role("button", name="Clear").click()
    page.fill("[data-testid=sessions-to]", (then - datetime.timedelta(days=5)).isoformat())
    page.locator("[data-testid=sessions-error] >> text=From is after To").wait_for()

    # on a phone the filters fold behind a toggle: the first session shows in the top 40% of the screen, the
    # toggle opens the dates, and a chosen one still applies (and is counted) once folded again
    phone = page_factory(viewport=PHONE)
    phone.goto(dashboard_url(hv) + "#/sessions")
    rows = phone.locator("[data-testid=session-row]")
    rows.nth(1).wait_for()
    top = phone.evaluate("document.querySelector('[data-testid=session-row]').getBoundingClientRect().top")
    assert top <= 0.4 * PHONE["height"], f"the first session starts at {top} px of {PHONE['height']}"
    assert not phone.locator("[data-testid=sessions-from]").is_visible()
    toggle = phone.locator("[data-testid=sessions-filters-toggle]")
    toggle.click()
    phone.locator("[data-testid=sessions-from]").wait_for(state="visible")
    assert phone.locator("[data-testid=sessions-to]").is_visible()
    phone.locator("[data-testid=sessions-dates-30d]").click()
    phone.wait_for_function(count, arg=1)
    shot(phone, "sessions-filters-open-phone")
    toggle.click()
    phone.locator("[data-testid=sessions-from]").wait_for(state="hidden")
    assert toggle.inner_text() == "Filters · 1"
    assert rows.count() == 1 and "the otter of today" in rows.nth(0).inner_text()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "sessions-dates-phone")
