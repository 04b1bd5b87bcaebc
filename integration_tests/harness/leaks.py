"""The suite ends by failing on any process it started that is still alive (a pytest plugin, registered in
``integration_tests/conftest.py``).

Which processes are the suite's: every process whose environment carries this run's ``HYPER_PI_TEST_RUN`` marker
(set in pytest's environment at start, so every child that inherits the environment has it, however far it is
reparented: a bridge whose pi died, a tmux server and the pis in its panes, a daemonised stub); every descendant
of the pytest process (children started with an environment built from scratch), remembered when each test ends
and before its fixtures stop, so a grandchild with an environment of its own (a pi the hypivisor spawned from an
allow-list) still counts after its parent is gone; and every process running in, or naming, the session's temp
folder. At the end of the
session, after every fixture is torn down, those still alive after a short grace are listed with their command
lines and the test after which each was first seen alive, killed, and the session fails.

``HYPI_LEAK_CHECK=0`` turns the check off (e.g. to keep processes for debugging).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

MARK = "HYPER_PI_TEST_RUN"
GRACE_S = 3.0  # processes that are exiting (a bridge after its pi, a tmux server after its last pane) get this long
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start_s: float  # seconds after boot
    cmdline: str


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def uptime() -> float:
    return float((PROC / "uptime").read_text().split()[0])


def parse_stat(text: str) -> tuple[str, int, float] | None:
    """(state, ppid, start seconds after boot) from /proc/<pid>/stat. Pure."""
    try:
        rest = text.rsplit(")", 1)[1].split()
        return rest[0], int(rest[1]), int(rest[19]) / _ticks()
    except (IndexError, ValueError):
        return None


def _read(pid: int) -> Proc | None:
    """A live (not zombie) process, or None."""
    try:
        parsed = parse_stat((PROC / str(pid) / "stat").read_text())
        cmd = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    if parsed is None or parsed[0] in ("Z", "X"):
        return None
    return Proc(pid, parsed[1], parsed[2], cmd)


def _marked(pid: int, marker: bytes) -> bool:
    try:
        return marker in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _under(pid: int, cmdline: str, folder: str | None) -> bool:
    """The process runs in, or names on its command line, ``folder`` (the session's temp folder)."""
    if not folder:
        return False
    if folder in cmdline:
        return True
    try:
        return os.readlink(PROC / str(pid) / "cwd").startswith(folder)
    except OSError:
        return False


def suite_processes(
    run_id: str, root: int, known: Collection[tuple[int, float]] = (), folder: str | None = None
) -> list[Proc]:
    """Live processes carrying ``MARK=run_id``, descending from ``root``, seen as such before (``known``: (pid,
    start) pairs), or running in or naming ``folder`` (``root`` and its ancestors excluded)."""
    marker = f"{MARK}={run_id}".encode()
    procs: dict[int, Proc] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            p = _read(int(entry.name))
            if p is not None:
                procs[p.pid] = p
    ancestors, pid = set(), root
    while pid > 1 and pid in procs and pid not in ancestors:
        ancestors.add(pid)
        pid = procs[pid].ppid
    found: dict[int, Proc] = {}
    for p in procs.values():
        if p.pid in ancestors:
            continue
        if (p.pid, p.start_s) in known or _marked(p.pid, marker) or _under(p.pid, p.cmdline, folder):
            found[p.pid] = p
            continue
        q = p
        for _ in range(64):  # bounded walk up the tree
            if q.ppid == root:
                found[p.pid] = p
                break
            q = procs.get(q.ppid)  # type: ignore[assignment]
            if q is None:
                break
    return sorted(found.values(), key=lambda p: p.start_s)


def culprit(start_s: float, windows: list[tuple[str, float, float]]) -> str:
    """The test that was running when a process started at ``start_s``: the last one to start before it (windows
    are (node id, start, end) in seconds after boot, in run order; /proc's clock ticks are 10 ms). Pure."""
    before = [(t0, t1, nodeid) for nodeid, t0, t1 in windows if t0 - 0.02 <= start_s]
    if not before:
        return "(before the first test: collection or a fixture of a wider scope)"
    t0, t1, nodeid = max(before)
    return nodeid if start_s <= t1 + 0.02 else f"(after {nodeid}: a fixture of a wider scope)"


class LeakCheck:
    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex
        self.root = os.getpid()
        self.windows: list[tuple[str, float, float]] = []
        self.owner: dict[tuple[int, float], str] = {}  # (pid, start) -> the test after which it was first seen
        os.environ[MARK] = self.run_id

    def _note(self, nodeid: str) -> None:
        for p in suite_processes(self.run_id, self.root, set(self.owner)):
            self.owner.setdefault((p.pid, p.start_s), nodeid)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        # before the fixtures stop: what a test's processes started (e.g. a pi a hypivisor spawned with an
        # environment of its own) still descends from pytest here, and is remembered after it is reparented
        self._note(item.nodeid)
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        t0 = uptime()
        yield
        self.windows.append((item.nodeid, t0, uptime()))
        self._note(item.nodeid)  # exact attribution; the clock is the fallback

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        folder = _basetemp(session.config)
        deadline = time.monotonic() + GRACE_S
        left = suite_processes(self.run_id, self.root, set(self.owner), folder)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = suite_processes(self.run_id, self.root, set(self.owner), folder)
        if not left:
            return
        lines = [f"{len(left)} process(es) started by the test suite are still alive (killed now):"]
        for p in left:
            lines.append(f"  pid {p.pid}: {p.cmdline[:300]}")
            owner = self.owner.get((p.pid, p.start_s)) or culprit(p.start_s, self.windows)
            lines.append(f"      started during {owner}")
        for p in left:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except OSError:
                pass
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "leftover processes", red=True)
            for line in lines:
                reporter.write_line(line)
        else:  # pragma: no cover - pytest always has one unless -p no:terminal
            print("\n".join(lines))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _basetemp(config: pytest.Config) -> str | None:
    """This session's temp folder (``pytest-of-<user>/pytest-<n>``), when one was made."""
    factory = getattr(config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None)
    return str(base) if base else None


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("HYPI_LEAK_CHECK") == "0" or not PROC.is_dir():
        return
    if hasattr(config, "workerinput"):  # an xdist worker: the controller's session checks
        return
    config.pluginmanager.register(LeakCheck(), "hyper-pi-leak-check")
