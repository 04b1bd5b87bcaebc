"""What a new user sees first in Pi-DE, in Chromium against a real hypivisor and real pi agents (fake LLM) (#20).

* Two unnamed pi agents in one folder get different titles ("app", "app · 2"), the same after a reload and after
  the second one's pi exits.
* A conversation with nothing in it yet says how to start instead of showing a blank pane.
* A pi in a linked git worktree has a "worktree" chip on its card; cards show the model without its provider, and
  their lines wrap between parts (branch, worktree, policy; activity, model, cost), so no line of a card is cut off.
* On a phone the chat header is one title line and one meta line: the model and thinking-level pickers sit behind
  a chip that opens them; every control in the header is a 40 px tap target inside the screen; the
  closed inspector drawer casts no shadow on the screen's edge.
* The inspector's allow-rule inputs show their whole placeholder and keep clear of the panel's edge.
* An agent whose pi exited has a composer that is, and looks, disabled (Send loses its accent), with the reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from integration_tests.harness.pide import dashboard_url, shot

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
PHONE_HEADER_MAX = 100  # px: two 44 px rows at most (it was ~160 with the pickers stacked)


def card_titles(page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-testid=node-card]')]
             .map((c) => [c.dataset.nodeId, c.querySelector('.node-title').textContent]))"""
    )


def rule_inputs(page) -> list[dict]:
    """Each allow-rule input's box, the inspector's inner right edge, and whether its placeholder fits."""
    return page.evaluate(
        """() => {
          const panel = document.querySelector('[data-testid=inspector]');
          const pr = panel.getBoundingClientRect(), ps = getComputedStyle(panel);
          const inner = pr.right - parseFloat(ps.paddingRight);
          const ctx = document.createElement('canvas').getContext('2d');
          return [...document.querySelectorAll('.rule-form input')].map((el) => {
            const s = getComputedStyle(el), r = el.getBoundingClientRect();
            ctx.font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
            const room = el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
            return { placeholder: el.placeholder, right: r.right, inner, text: ctx.measureText(el.placeholder).width, room };
          });
        }"""
    )


def header_controls(page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll('.stage-head button, .stage-head select')]
             .filter((el) => el.getBoundingClientRect().width > 0)
             .map((el) => { const r = el.getBoundingClientRect();
               return { name: el.getAttribute('aria-label') || el.textContent.trim(), h: r.height, left: r.left,
                        right: r.right }; })"""
    )


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_titles_phone_header_rule_inputs_and_an_exited_composer(dash_hv, start_pi, pi_home, page_factory, tmp_path):
    first = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})
    second = start_pi(PI, mode="rpc", env={"HYPIVISOR_WS": dash_hv.ws_url})  # same folder, no session name
    folder = pi_home.cwd.name
    # a third pi in a linked git worktree on a long branch: its card says so
    repo, wt = tmp_path / "shop", tmp_path / "shop-wt"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# shop\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    git(repo, "worktree", "add", "-q", "-b", "fix/csv-encoding-of-the-nightly-import", str(wt))
    third = start_pi(PI, mode="rpc", cwd=wt, env={"HYPIVISOR_WS": dash_hv.ws_url})

    # titles: unique, the later started agent "· 2", and the same after a reload
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(dash_hv))
    page.wait_for_selector(f"[data-node-id='{second.node_id}']", timeout=20_000)
    page.wait_for_selector(f"[data-node-id='{third.node_id}'] [data-testid=worktree-tag]", timeout=20_000)
    titles = card_titles(page)
    assert sorted([titles[first.node_id], titles[second.node_id]]) == [folder, f"{folder} · 2"], titles
    page.reload()
    page.wait_for_selector(f"[data-node-id='{second.node_id}']", timeout=20_000)
    assert card_titles(page) == titles
    cut = page.evaluate(
        """() => [...document.querySelectorAll('.node-meta')].filter((m) => m.scrollWidth > m.clientWidth + 1)
             .map((m) => m.textContent)"""
    )
    assert not cut, f"a card's line is cut off: {cut}"  # lines wrap between their parts (branch, worktree, policy…)
    page.click(f"[data-node-id='{second.node_id}']")
    page.wait_for_selector("[data-testid=inspector] .mono >> text=bash", timeout=20_000)
    assert page.locator("[data-testid=chat-stage] .stage-title-row strong").inner_text() == titles[second.node_id]

    # the inspector's allow-rule inputs: whole placeholders, clear of the panel's edge
    for box in rule_inputs(page):
        assert box["text"] <= box["room"], f"placeholder cut off: {box}"
        assert box["right"] <= box["inner"] + 0.5, f"input reaches past the panel's padding: {box}"

    # a phone: a short header; the chip opens both pickers, inside the screen
    phone = page_factory(**PHONE)
    phone.goto(dashboard_url(dash_hv) + f"#/agent/{first.node_id}")
    chip = phone.locator("[data-testid=model-chip]")
    chip.wait_for(timeout=20_000)
    head = phone.locator(".stage-head").bounding_box()
    assert head["height"] <= PHONE_HEADER_MAX, f"phone header {head['height']} px tall"
    for c in header_controls(phone):
        assert c["h"] >= 40, f"tap target under 40 px: {c}"
        assert c["left"] >= 0 and c["right"] <= 390, f"outside the screen: {c}"
    shadow = phone.evaluate("() => getComputedStyle(document.querySelector('.inspector-slot')).boxShadow")
    assert shadow == "none", f"the closed drawer's shadow darkens the right edge: {shadow}"
    # the closed drawer is off screen: Tab never lands inside it
    assert phone.evaluate("() => document.querySelector('.inspector-slot').inert") is True
    for _ in range(30):
        phone.keyboard.press("Tab")
        assert not phone.evaluate("() => document.querySelector('.inspector-slot').contains(document.activeElement)")
    assert "Write a prompt below" in phone.locator("[data-testid=empty-conversation]").inner_text()  # not a blank pane
    assert phone.locator("[data-testid=model-picker]").count() == 0  # behind the chip until asked for
    assert "fake-model" in chip.inner_text()
    chip.click()
    picker = phone.locator("[data-testid=model-picker]")
    picker.wait_for()
    for el in (picker, phone.locator("[data-testid=thinking-picker]")):
        box = el.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] >= 40, box
    assert picker.input_value() == "fake/fake-model"
    shot(phone, "polish-phone-pickers")
    phone.keyboard.press("Escape")
    phone.wait_for_selector("[data-testid=model-pop]", state="detached")

    # pi exits: the composer is disabled, says why, and Send no longer looks like a button to press
    second.stop()
    page.wait_for_selector("[data-testid=exited-banner]", timeout=15_000)
    assert page.locator("[data-testid=chat-stage] .stage-title-row strong").inner_text() == titles[second.node_id]
    send = page.get_by_role("button", name="Send")
    assert send.is_disabled()
    assert page.locator("textarea[aria-label=Prompt]").is_disabled()
    assert "Resume it in a new pi" in page.locator("[data-testid=composer-disabled]").inner_text()
    look = page.evaluate(
        """() => {
          const bg = (el) => getComputedStyle(el).backgroundColor;
          const send = [...document.querySelectorAll('.composer .btn-primary')].pop();
          const spawn = [...document.querySelectorAll('.btn-primary')].find((b) => !b.disabled);
          return { send: bg(send), accent: bg(spawn), opacity: getComputedStyle(send).opacity };
        }"""
    )
    assert look["send"] != look["accent"], f"a disabled Send keeps the accent colour: {look}"
    # the exited agent's policy select is disabled and looks it
    policy = page.locator("[data-testid=policy-select]")
    assert policy.is_disabled()
    assert float(policy.evaluate("(el) => getComputedStyle(el).opacity")) < 0.8
    shot(page, "polish-exited")
