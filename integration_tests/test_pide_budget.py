"""Pi-DE's budgets in Chromium against a real hypivisor and a real pi on the fake LLM (specs/budgets.md).

A tiny default budget (`--budget-agent-tokens 50`) is crossed by the first reply: the roster card shows the badge,
the composer says which budget holds the agent, a prompt is refused with that message, and "Override once" lets
the next prompt through. The Budget view (#/budget) shows the totals and the spend chart, and sets and removes a
budget.
"""

from __future__ import annotations

import pytest

from integration_tests.harness.pide import dashboard_url, shot

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}


def send(page, text):
    page.fill("textarea[aria-label=Prompt]", text)
    page.get_by_role("button", name="Send").click()


def test_a_held_agent_says_why_override_lets_the_next_prompt_through_and_the_budget_view_shows_spend(
    dash_hv_factory, start_pi, page_factory
):
    hv = dash_hv_factory(args=["--budget-agent-tokens", "50"])
    pi = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": hv.ws_url})
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv))
    card = page.locator(f"[data-node-id='{pi.node_id}']")
    card.click(timeout=20_000)
    send(page, "spend a little")
    page.wait_for_selector("text=You said: spend a little", timeout=30_000)

    # held: the card's badge and the notice above the composer say which budget
    card.locator("[data-testid=budget-badge][data-level=held]").wait_for()
    notice = page.locator("[data-testid=budget-hold]")
    notice.wait_for()
    assert "this agent's budget of 50 tokens" in notice.inner_text()
    send(page, "one more please")
    page.wait_for_selector("text=this agent's budget of 50 tokens reached: raise it or override once")
    assert page.locator("text=You said: one more please").count() == 0
    shot(page, "budget-held")

    # override once: the notice goes, the next prompt runs, the badge says over
    page.locator("[data-testid=budget-override]").click()
    notice.wait_for(state="detached")
    card.locator("[data-testid=budget-badge][data-level=over]").wait_for()
    send(page, "after the override")
    page.wait_for_selector("text=You said: after the override", timeout=30_000)

    # the Budget view: totals, the chart, this agent's spend; set and remove a day budget
    page.locator("[data-testid=budget-link]").click()
    assert page.evaluate("location.hash") == "#/budget"
    view = page.locator("[data-testid=budget-view]")
    view.locator("[data-testid=totals-row]").first.wait_for()
    assert "All agents" in view.locator("[data-testid=totals-row]").first.inner_text()
    bars = view.locator("[data-testid=spend-bar]")
    assert bars.count() == 7  # one per day of the last 7
    assert float(bars.nth(6).get_attribute("height")) > 0  # today's
    view.locator("[data-testid=group-agent]").click()
    view.locator(f"[data-testid=spend-row][data-key='{pi.node_id}']").wait_for()
    assert "tok" in view.locator(f"[data-testid=spend-row][data-key='{pi.node_id}']").inner_text()
    defaults = view.locator("[data-testid=budget-row][data-scope=agent]")
    assert "(default from the hypivisor's flags)" in defaults.first.inner_text()
    view.locator("select[aria-label='Budget for']").select_option("day")
    view.locator("input[aria-label='USD per day']").fill("100")
    view.get_by_role("button", name="Set budget").click()
    day_row = view.locator("[data-testid=budget-row][data-scope=day]")
    day_row.wait_for()
    assert "$100.00/day" in day_row.inner_text()
    shot(page, "budget-view")
    day_row.get_by_role("button", name="remove").click()
    day_row.wait_for(state="detached")
    page.reload()
    view.locator("[data-testid=totals-row]").first.wait_for()
    assert view.locator("[data-testid=budget-row][data-scope=day]").count() == 0
