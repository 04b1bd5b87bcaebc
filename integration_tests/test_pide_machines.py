"""Pi-DE in Chromium with machines (specs/machines.md): a real hypivisor and two real machine services on one host
(``python -m pi_socket serve``, each its own PI_SOCKET_MACHINE, HOME, runtime dir and tmux server). The roster
shows every machine, even with no agent; the spawn dialog asks for the machine, browses its folders and starts pi
there (a stub pi in that machine's tmux that registers like a bridge)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from integration_tests.harness.machines import machines_fixture  # noqa: F401 - the `machines` fixture
from integration_tests.harness.pide import dashboard_url, shot
from integration_tests.harness.spawn import NEEDS_TMUX

pytestmark = [pytest.mark.browser, NEEDS_TMUX]


def test_roster_by_machine_and_spawn_on_a_chosen_machine(dash_hv_factory, machines, page_factory):
    hv = dash_hv_factory(env={"PI_SOCKET_MACHINE": "hub"})
    alpha, beta = machines(hv, "alpha").start(), machines(hv, "beta").start()
    (alpha.home / "alpha-project").mkdir()
    (beta.home / "beta-project").mkdir()
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(hv))
    for name in ("hub", "alpha", "beta"):  # every machine, though no agent runs anywhere
        page.wait_for_selector(f"[data-testid=machine-group][data-machine='{name}'][data-online='true']")
    assert "no agents" in page.locator("[data-testid=machine-group][data-machine='beta']").inner_text()

    page.get_by_role("button", name="+ Spawn agent").click()
    modal = page.locator("[data-testid=spawn-modal]")
    picker = modal.locator("[data-testid=spawn-machine]")
    assert picker.input_value() == "hub"  # the hypivisor's own machine first
    picker.select_option("beta")
    modal.locator("text=beta-project").click()  # beta's folders, not alpha's
    page.wait_for_selector("[data-testid=spawn-path] >> text=~/beta-project")
    assert modal.locator("text=alpha-project").count() == 0
    shot(page, "spawn-machine")
    page.fill("input[aria-label='New folder name']", "app")
    page.get_by_role("button", name="Deploy agent here").click()
    try:
        page.wait_for_selector("[data-testid=spawn-modal]", state="detached", timeout=40_000)
    except Exception as exc:
        raise AssertionError(f"spawn did not finish: {modal.inner_text()}\n{beta.stderr()[-2000:]}") from exc
    assert (beta.home / "beta-project" / "app").is_dir() and not (alpha.home / "beta-project").exists()
    card = page.locator("[data-testid=machine-group][data-machine='beta'] [data-testid=node-card]")
    card.wait_for()
    pid = int(card.get_attribute("data-node-id").removeprefix("stub-"))  # type: ignore[union-attr]
    try:
        assert page.locator("[data-testid=machine-group][data-machine='alpha'] [data-testid=node-card]").count() == 0
        shot(page, "roster-machines")

        alpha.kill()  # the machine service dies: its header says offline, it stays listed
        page.wait_for_selector("[data-testid=machine-group][data-machine='alpha'][data-online='false']")
        assert "offline" in page.locator("[data-testid=machine-group][data-machine='alpha']").inner_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
