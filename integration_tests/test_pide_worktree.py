"""Pi-DE in Chromium: spawning into a new git worktree, and removing it on request (specs/machines.md,
"Worktrees"). A real hypivisor spawns the pinned pi (fake LLM, shim installed) in real tmux, in a real git
repository: the dialog offers the worktree only in a repository (off by default); the agent's inspector lists the
worktree (from its bridge's report), offers no removal while the agent runs, and once pi has exited removes it
after a confirmation."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from integration_tests.harness.pi_proc import pi_bin
from integration_tests.harness.pide import dashboard_url, shot

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
WIDE = {"width": 1440, "height": 900}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def tmux_dir(tmp_path):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (run integration_tests/setup_env.sh)")
    d = tmp_path / "tmux"
    d.mkdir()
    try:
        yield d
    finally:
        subprocess.run(["tmux", "kill-server"], env={**os.environ, "TMUX_TMPDIR": str(d)}, capture_output=True,
                       timeout=10)  # fmt: skip


def test_spawn_into_a_worktree_then_remove_it_from_the_inspector(dash_hv_factory, pi_home, tmux_dir, tmp_path,
                                                                page_factory):  # fmt: skip
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pi").symlink_to(pi_bin(PI))
    home = pi_home.home
    app = home / "app"
    app.mkdir()
    git(app, "init", "-q", "-b", "main")
    (app / "README.md").write_text("hello\n")
    git(app, "add", ".")
    git(app, "commit", "-qm", "one")
    (home / "plain").mkdir()
    pi_env = {k: v for k, v in pi_home.env.items() if k.startswith("PI_")}
    hv = dash_hv_factory(home=home, env={**pi_env, "TMUX_TMPDIR": str(tmux_dir), "HYPI_SPAWN_TIMEOUT": "40",
                                         "PATH": f"{bindir}:{os.environ['PATH']}"})  # fmt: skip
    page = page_factory(viewport=WIDE)
    page.goto(dashboard_url(hv))
    page.get_by_role("button", name="+ Spawn agent").click()
    modal = page.locator("[data-testid=spawn-modal]")
    modal.locator("text=plain").click()
    page.wait_for_selector("[data-testid=spawn-path] >> text=~/plain")
    assert modal.locator("[data-testid=spawn-worktree]").count() == 0  # not a repository: nothing offered
    modal.locator("text=↑ parent folder").click()
    modal.locator("button.dir-item >> text=app").click()
    page.wait_for_selector("[data-testid=spawn-path] >> text=~/app")
    box = modal.get_by_label("New worktree on a new branch")
    assert not box.is_checked()  # off by default
    box.check()
    modal.get_by_label("Branch name").fill("bad name")
    modal.get_by_role("button", name="Deploy agent here").click()
    page.wait_for_selector("[data-testid=spawn-error] >> text=/letters, digits/")
    assert not (home / "app-worktrees").exists()  # a bad name creates nothing
    modal.get_by_label("Branch name").fill("feat/web")
    shot(page, "spawn-worktree")
    modal.get_by_role("button", name="Deploy agent here").click()
    page.wait_for_selector("[data-testid=spawn-modal]", state="detached", timeout=60_000)
    wt = (home / "app-worktrees" / "feat-web").resolve()
    assert (wt / "README.md").read_text() == "hello\n"

    section = page.locator("[data-testid=inspector] [data-testid=worktree]")
    try:
        section.wait_for(timeout=30_000)
    except Exception as exc:  # say what the page showed instead
        shown = page.locator("[data-testid=inspector]").all_inner_texts()
        raise AssertionError(f"no worktree in the inspector at {page.evaluate('location.hash')}: {shown}") from exc
    assert page.locator("[data-testid=worktree-path]").inner_text() == str(wt)
    text = section.inner_text()
    assert "feat/web" in text and str(app.resolve()) in text and "once the agent is stopped" in text
    assert section.get_by_role("button", name="Remove worktree…").count() == 0
    shot(page, "inspector-worktree")

    sessions = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True,
                              env={**os.environ, "TMUX_TMPDIR": str(tmux_dir)}).stdout.split()  # fmt: skip
    for s in sessions:  # pi stops (its tmux session ends): the agent is gone, the worktree stays
        subprocess.run(["tmux", "kill-session", "-t", f"={s}"], env={**os.environ, "TMUX_TMPDIR": str(tmux_dir)})
    remove = section.get_by_role("button", name="Remove worktree…")
    remove.wait_for(timeout=30_000)
    assert wt.is_dir()
    (wt / "scratch.txt").write_text("unsaved")
    remove.click()
    section.get_by_role("button", name="Remove", exact=True).click()
    section.get_by_role("button", name="Remove anyway").wait_for()  # uncommitted changes: asked again
    assert "uncommitted" in section.locator("[data-testid=worktree-error]").inner_text() and wt.is_dir()
    section.get_by_role("button", name="Remove anyway").click()
    page.wait_for_selector("[data-testid=worktree-removed]", timeout=30_000)
    assert not wt.exists() and "feat/web" in git(app, "branch")
