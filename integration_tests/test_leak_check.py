"""The leftover-process check (integration_tests/harness/leaks.py) in a pytest run of its own: a process a test
leaves behind fails the session with its command line and the test that started it, and is gone afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from integration_tests.harness import leaks

REPO = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k != leaks.MARK}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "integration_tests.harness.leaks",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sample.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _alive(tag: str) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and tag in (entry / "cmdline").read_bytes().decode(errors="replace"):
                out.append(entry.name)
        except OSError:
            pass
    return out


def test_a_leaked_child_and_a_reparented_daemon_fail_the_session_and_are_killed(tmp_path):
    tag = uuid.uuid4().hex
    done = _pytest(
        tmp_path,
        f"""
        import os, subprocess, sys
        NAP = [sys.executable, "-c", "import time; time.sleep(300)"]

        def test_clean():
            subprocess.run(["true"], check=True)

        def test_leaks_a_child():
            # an environment built from scratch: found as a descendant of pytest
            subprocess.Popen([*NAP, "{tag}-child"], env={{"PATH": os.environ["PATH"]}})

        def test_leaks_a_daemon():
            # double fork: reparented away from pytest, found by the marker in its inherited environment
            subprocess.run(["sh", "-c", 'setsid "$@" >/dev/null 2>&1 &', "sh", *NAP, "{tag}-daemon"], check=True)
        """,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "3 passed" in out and "leftover processes" in out, out
    assert f"time.sleep(300) {tag}-child" in out and f"time.sleep(300) {tag}-daemon" in out, out
    assert "started during test_sample.py::test_leaks_a_child" in out, out
    assert "started during test_sample.py::test_leaks_a_daemon" in out, out
    deadline = time.monotonic() + 5
    while _alive(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tag), "killed at the end of the session"


def test_grandchildren_with_an_environment_of_their_own_are_found(tmp_path):
    """As a hypivisor spawns a pi from an allow-listed environment: the parent is stopped at teardown, the pi
    outlives it without the marker; and a daemon without the marker that runs in the test's temp folder."""
    tag = uuid.uuid4().hex
    done = _pytest(
        tmp_path,
        f"""
        import os, subprocess, sys, time
        import pytest

        NAP = [sys.executable, "-c", "import time; time.sleep(300)"]
        PARENT = [sys.executable, "-c",
                  "import subprocess, sys, time; subprocess.Popen(sys.argv[1:], env={{'PATH': '/usr/bin'}},"
                  " start_new_session=True); time.sleep(300)", *NAP, "{tag}-spawned"]

        @pytest.fixture
        def parent():
            p = subprocess.Popen(PARENT)
            yield p
            p.kill()
            p.wait()

        def test_spawns(parent):
            time.sleep(1)

        def test_daemon_in_tmp(tmp_path):
            subprocess.run(["sh", "-c", 'setsid "$@" >/dev/null 2>&1 &', "sh", *NAP, "{tag}-in-tmp"],
                           cwd=tmp_path, env={{"PATH": os.environ["PATH"]}}, check=True)
        """,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"{tag}-spawned" in out and "started during test_sample.py::test_spawns" in out, out
    assert f"{tag}-in-tmp" in out, out
    assert "-c import subprocess" not in out, "the parent was stopped by its fixture: no leak"
    deadline = time.monotonic() + 5
    while _alive(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tag)


def test_a_clean_session_passes_and_a_process_ending_within_the_grace_is_no_leak(tmp_path):
    done = _pytest(
        tmp_path,
        """
        import subprocess

        def test_short_lived():
            subprocess.Popen(["sleep", "1"])
        """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leftover" not in done.stdout


def test_culprit_and_stat_parsing():
    windows = [("a", 10.0, 12.0), ("b", 12.0, 20.0)]
    assert leaks.culprit(11.0, windows) == "a" and leaks.culprit(15.0, windows) == "b"
    assert leaks.culprit(12.0, windows) == "b", "the later test at a shared boundary"
    assert leaks.culprit(100.0, windows).startswith("(after b")
    assert leaks.culprit(1.0, windows).startswith("(before the first test")
    ticks = os.sysconf("SC_CLK_TCK")
    stat = "123 (sle ep) S 45 " + " ".join(["0"] * 17) + f" {ticks * 7} 0 0"
    assert leaks.parse_stat(stat) == ("S", 45, 7.0)
    assert leaks.parse_stat("garbage") is None
