"""Version skew in the browser (specs/protocol.md §0): Pi-DE built from the previous released wire (protocol 1.0,
taken from git history) against today's hypivisor, which pushes events and fields that build never heard of
(inbox, machines, budgets). The old page must keep working: roster, an agent's conversation, no script error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from integration_tests.harness.gitrev import tree_at
from integration_tests.harness.pide import PI_DE, RegisteredAgent, assistant_msg, dashboard_url, user_msg
from integration_tests.test_version_skew import PREVIOUS

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def previous_dist(tmp_path_factory) -> Path:
    """The previous Pi-DE, built with today's node_modules (its lockfile pinned the same toolchain)."""
    modules = PI_DE / "node_modules"
    if not (modules / ".bin" / "vite").exists():
        pytest.skip("pi_de/node_modules is not installed (npm ci in pi_de)")
    out = tree_at(PREVIOUS, tmp_path_factory.mktemp("previous-pide"), "pi_de")
    root = out / "pi_de"
    link = root / "node_modules"
    dist = out / "dist"
    link.symlink_to(modules, target_is_directory=True)
    try:
        built = subprocess.run(
            [str(modules / ".bin" / "vite"), "build", "--outDir", str(dist), "--emptyOutDir"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NODE_ENV": "production"},
        )
    finally:
        link.unlink()  # never leave a link to the repository's node_modules in a tree that is removed later
    assert built.returncode == 0 and (dist / "index.html").is_file(), built.stdout[-2000:] + built.stderr[-2000:]
    return dist


def test_the_previous_pide_works_with_today_s_hypivisor(previous_dist, dash_hv_factory, page_factory):
    hv = dash_hv_factory(env={"HYPI_DASHBOARD_DIR": str(previous_dist)})
    agent = RegisteredAgent(
        hv,
        "n-new",
        "/srv/projects/api",
        session_name="fix login",
        messages=[user_msg("hello from before"), assistant_msg("an answer the old page renders")],
        protocol_version="1.1",
    )
    try:
        page = page_factory()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(dashboard_url(hv))
        page.wait_for_selector("[data-node-id='n-new']")
        # today's frames carry what 1.0 never knew (capabilities, approval and unread fields, machine events)
        agent.update(session_name="fix login v2")
        page.wait_for_selector("[data-node-id='n-new'] >> text=fix login v2")
        page.locator("[data-node-id='n-new']").click()
        page.wait_for_selector("text=an answer the old page renders")
        assert errors == [], errors
    finally:
        agent.close()
