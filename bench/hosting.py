"""Section 12: every local pi served by the machine service, against a bridge child per pi, in the same run.

Real pi (RPC mode and ``pi -p``) on the fake LLM with the shim installed as a user installs it, a real
``python -m pi_socket serve`` (started before the measured runs: the steady state of a machine), a real hypivisor.

1. memory: the service's RSS with no agent, then with 10 live pi attached: the growth per agent, against the RSS
   of one per-pi bridge (``PI_SOCKET_MODE=bridge``) measured beside it; pi's own RSS is in the note.
2. CPU Hyper-Pi adds to one ``pi -p`` run (a few tool calls and a streamed reply): the service's CPU during the run
   (``/proc/<pid>/schedstat`` before and after, the run's agent detached) over pi's own CPU (``wait4``), against
   the bridge child's own CPU (what it logs at exit) over pi's CPU in the same rounds.
3. time from pi's start (``Popen``) to its ``node_joined`` on a dashboard connection, p50 and p99, service
   against bridge child, alternating.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from websockets.sync.client import connect

from bench.common import (
    REPO,
    Row,
    free_port,
    median,
    pair_ratios,
    pct,
    ratios_note,
    rss,
    run_ns,
    start_hypivisor,
    stop_process,
    wait_port,
)
from bench.pirun import PrintRun, exit_cpu, pick_version
from integration_tests.harness.pi_proc import FakeLLM, PiHome, RpcPi, wait_until

SEC = "12 machine hosting"


def _serve(home: PiHome, hv_ws: str) -> subprocess.Popen:
    env = {**home.env, "PYTHONPATH": str(REPO), "HYPIVISOR_WS": hv_ws}
    proc = subprocess.Popen([sys.executable, "-m", "pi_socket", "serve"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: (home.runtime / "agents.sock").exists(), 20, "the machine service's socket")
    return proc


def _detached(run: PrintRun, timeout: float = 10.0) -> None:
    """The service is done with this run's agent (its ``agent detached`` line)."""
    wait_until(lambda: any(r.get("msg") == "agent detached" for r in run.bridge_log()), timeout, "the agent to detach")


def _joined(dash, pid: int, timeout: float = 30.0) -> float:
    """Wait for ``node_joined`` of the node with this pi pid; the monotonic time it arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = orjson.loads(dash.recv(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
        node = msg.get("node") if isinstance(msg, dict) else None
        if msg.get("event") == "node_joined" and isinstance(node, dict) and node.get("pid") == pid:
            return time.monotonic()
    raise RuntimeError(f"pi {pid} never joined the roster")


def run(smoke: bool, reps: int | None, log=print) -> list[Row]:
    version = pick_version()
    agents = 3 if smoke else 10
    cpu_reps = reps or (1 if smoke else 7)
    roster_reps = 1 if smoke else 15
    tools, tokens = (3, 100) if smoke else (10, 1000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-hosting-"))
    llm = FakeLLM(tmp)
    port = free_port()
    hv = start_hypivisor(port, tmp / "hv")
    hv_ws = f"ws://127.0.0.1:{port}/ws"
    home = PiHome(tmp / "pi", llm)
    service = None
    live: list[RpcPi] = []
    try:
        wait_port(port, proc=hv)
        service = _serve(home, hv_ws)
        time.sleep(1.0)  # its registration and pi-version facts settle
        # 1. memory
        base = rss(service.pid)
        joined = {"HYPIVISOR_WS": hv_ws}
        for _ in range(agents):
            pi = RpcPi(home, version, home.cwd, joined, ())
            live.append(pi)
            pi.wait_bridge()
        time.sleep(1.0)
        grown = rss(service.pid)
        per_agent = (grown - base) / agents / 2**20
        pi_rss = median([rss(p.proc.pid) for p in live]) / 2**20
        own = RpcPi(home, version, home.cwd, {**joined, "PI_SOCKET_MODE": "bridge"}, ())
        live.append(own)
        own.wait_bridge()
        time.sleep(1.0)
        bridge_rss = rss(own.bridge_pid()) / 2**20
        log(f"  hosting: service {base / 2**20:.1f} → {grown / 2**20:.1f} MB with {agents} agents; "
            f"bridge {bridge_rss:.1f} MB; pi {pi_rss:.1f} MB")  # fmt: skip
        for pi in live:
            pi.stop()
        live.clear()
        # 2. CPU added to one pi -p run
        script = [
            {"tool_calls": [{"name": "bash", "arguments": {"command": f"echo step {i}"}}], "delay": 0}
            for i in range(tools)
        ]
        script.append({"text": "tok " * tokens, "chunk": 4, "delay": 0})
        svc_ratio: list[float] = []
        bridge_ratio: list[float] = []
        pi_cpu: list[float] = []
        for rep in range(cpu_reps + 1):  # rep 0 warms caches and is dropped
            for mode in ("service", "bridge") if rep % 2 else ("bridge", "service"):
                llm.reset()
                llm.script(script)
                home.env["PI_SOCKET_MODE"] = mode
                before = run_ns(service.pid)
                run_ = PrintRun(home, version, "run the script")
                try:
                    run_.wait()
                finally:
                    run_.kill()
                if run_.rc != 0:
                    raise RuntimeError(f"pi -p ({mode}) rc={run_.rc}")
                if mode == "service":
                    _detached(run_)
                    added = (run_ns(service.pid) - before) / 1e9
                else:
                    added = exit_cpu(run_) or float("nan")
                if rep == 0:
                    continue
                (svc_ratio if mode == "service" else bridge_ratio).append(added / run_.cpu)
                if mode == "service":
                    pi_cpu.append(run_.cpu)
                log(f"  hosting cpu rep{rep} {mode:7s}: pi {run_.cpu:.2f}s, Hyper-Pi {added:.3f}s")
        home.env.pop("PI_SOCKET_MODE", None)
        # 3. pi start → roster
        times: dict[str, list[float]] = {"service": [], "bridge": []}
        with connect(hv_ws, open_timeout=10, max_size=2**24) as dash:
            for rep in range(roster_reps):
                for mode in ("service", "bridge") if rep % 2 else ("bridge", "service"):
                    env = {**home.env, "HYPIVISOR_WS": hv_ws, "PI_SOCKET_MODE": mode}
                    t0 = time.monotonic()
                    pi = RpcPi(home, version, home.cwd, env, ())
                    try:
                        times[mode].append(_joined(dash, pi.proc.pid, timeout=30) - t0)
                    finally:
                        pi.stop()
        log(f"  hosting roster: service {median(times['service']):.2f}s, bridge {median(times['bridge']):.2f}s")
    finally:
        for pi in live:
            try:
                pi.stop()
            except Exception:  # noqa: BLE001 - teardown reaches everything
                pass
        if service is not None:
            stop_process(service)
        home.stop_service()
        stop_process(hv)
        llm.close()
        shutil.rmtree(tmp, ignore_errors=True)
    what = f"pi {version}"
    return [
        Row(
            SEC,
            f"RSS added per live pi ({agents} agents on one service; {what})",
            per_agent,
            "MB",
            "per-pi bridge",
            bridge_rss,
            "<= 5 MB",
            met=per_agent <= 5.0,
            note=f"service {base / 2**20:.1f} MB with no agent; pi itself {pi_rss:.0f} MB",
        ),  # fmt: skip
        Row(SEC, "RSS of one per-pi bridge (today's design)", bridge_rss, "MB"),
        Row(
            SEC,
            f"CPU Hyper-Pi adds to one pi -p run ({tools} tool calls + {tokens} tokens), service running",
            median(svc_ratio),
            "x pi",
            "per-pi bridge",
            median(bridge_ratio),
            "<= 0.05x pi",
            met=median(svc_ratio) <= 0.05,
            reps=cpu_reps,
            note=ratios_note("per-run", svc_ratio) + f"; pi's own CPU {median(pi_cpu):.2f} s",
        ),  # fmt: skip
        Row(
            SEC,
            "CPU a per-pi bridge adds to the same run",
            median(bridge_ratio),
            "x pi",
            reps=cpu_reps,
            note=ratios_note("per-run", bridge_ratio),
        ),  # fmt: skip
        Row(
            SEC,
            "pi start → agent in roster, p50 (service)",
            median(times["service"]),
            "s",
            "per-pi bridge",
            median(times["bridge"]),
            "<= 1.0x bridge",
            met=median(times["service"]) <= median(times["bridge"]),
            reps=roster_reps,
            paired_ratio=median(pair_ratios(times["service"], times["bridge"])),
        ),  # fmt: skip
        Row(
            SEC,
            "pi start → agent in roster, p99 (service)",
            pct(times["service"], 99),
            "s",
            "per-pi bridge",
            pct(times["bridge"], 99),
            reps=roster_reps,
        ),  # fmt: skip
        Row(
            SEC,
            "pi start → agent in roster, p50 (per-pi bridge)",
            median(times["bridge"]),
            "s",
            reps=roster_reps,
            note=f"p99 {pct(times['bridge'], 99):.2f} s",
        ),  # fmt: skip
    ]
