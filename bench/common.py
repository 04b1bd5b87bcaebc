"""Shared helpers: process CPU/RSS from /proc, ports, percentiles, result rows."""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout} s")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_hypivisor(
    port: int,
    home: Path,
    args: tuple[str, ...] = (),
    env_extra: dict[str, str] | None = None,
    stderr: Path | None = None,
) -> subprocess.Popen:
    """A real ``python -m hypivisor`` on 127.0.0.1:``port`` with ``home`` as its HOME (not yet listening): no dashboard
    port, warnings only, and connection caps far above the 1,000+ connections the relay and registry runs open.
    ``args`` and ``env_extra`` add options (cluster mode: ``--nats`` and ``HYPI_NATS_*``); ``stderr``: a file for
    its start-up errors."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPI_", "TMUX"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), HYPI_DASHBOARD_DIR=str(home / "none"))
    env.update(env_extra or {})
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypivisor",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--dashboard-port",
            "0",
            "--log-level",
            "warning",
            "--max-connections",
            "8192",
            "--max-connections-per-peer",
            "8192",
            "--no-token",  # the clients connect without one; no token file in the scratch HOME
            *args,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr.open("wb"),
    )


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_s(pid: int | None) -> float:
    """utime + stime of one process, seconds (/proc/<pid>/stat fields 14 and 15)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / TICK


def run_ns(pid: int | None) -> int:
    """Time the process's threads spent on a CPU, ns (/proc/<pid>/schedstat; falls back to ticks).

    ``/proc/<pid>/stat`` counts in 10 ms ticks: a 2 s window of a relay at 20 % of a core is only ~40
    ticks (±2.5 %), too coarse for a ±10 % target. schedstat is exact (all threads of the process).
    """
    if pid is None:
        return 0
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        return int(cpu_s(pid) * 1e9)


def run_tree_s(pids) -> float:
    return sum(run_ns(p) for p in pids) / 1e9


def rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def pin(pid: int, cpu: int) -> None:
    try:
        if os.cpu_count() and os.cpu_count() > 1:
            os.sched_setaffinity(pid, {cpu})
    except OSError:
        pass


class pinned_self:
    """Pin this process to ``cpu`` for a section and restore its affinity afterwards.

    Children inherit affinity: left pinned, the sections that follow (pi with its bridge, Chromium) would all
    share one core, which is not how anyone runs them (it made the shim look 1.16x instead of 1.05x).
    """

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.saved: set[int] | None = None

    def __enter__(self) -> pinned_self:
        try:
            self.saved = os.sched_getaffinity(0)
        except OSError:
            self.saved = None
        pin(os.getpid(), self.cpu)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved:
            try:
                os.sched_setaffinity(0, self.saved)
            except OSError:
                pass


def pct(xs, q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def pair_ratios(values, refs) -> list[float]:
    """value/ref for each repetition that has both figures (each pair measured back to back)."""
    return [v / r for v, r in zip(values, refs, strict=False) if v is not None and r]


def ratios_note(label: str, ratios: list[float], min_count: int = 1) -> str:
    """``"<label> 1.02, 0.97, …"``: the per-repetition ratios, so a reader sees how noisy a pair was."""
    return f"{label} " + ", ".join(f"{x:.2f}" for x in ratios) if len(ratios) >= min_count else ""


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


@dataclass
class Row:
    """One line of the results table: a measured figure, what it is compared with, the target."""

    section: str
    metric: str
    value: float
    unit: str
    ref: str = ""  # what the ratio is against, e.g. "nginx"
    ref_value: float | None = None
    target: str = ""  # e.g. ">= 0.9x nginx", "<= 400 B"
    met: bool | None = None  # None: informational
    note: str = ""
    reps: int = 1
    extra: dict = field(default_factory=dict)
    # median of the per-repetition ratios (each measured back to back with its reference); when set it is
    # the ratio shown, because on a noisy machine it is steadier than the ratio of the two medians
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.ref_value in (None, 0) or self.value is None:
            return None
        return self.value / self.ref_value

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def fmt(x) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    if isinstance(x, str):
        return x
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.2f} M"
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.0f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"
