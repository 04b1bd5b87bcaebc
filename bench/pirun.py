"""Targets 2 and 3: a real pi (``pi -p``, print mode) on the fake LLM, with the pi-socket shim installed
exactly as a user installs it (``integration_tests/harness/pi_proc.py`` builds the pi home).

2. streaming cost: the fake LLM streams a reply of 1 KB, 100 KB and 1 MB in deltas of 16 characters
   (one ``message_update`` per delta); a WebSocket client on the bridge (no compression) counts the
   bytes it receives per ``message_update``; the bridge's CPU is read from /proc while it runs.
   A first tool call (``sleep``) gives the client time to connect before the reply streams.
3. overhead: the same scripted run (N tool calls, then a reply of T streamed tokens of 4 characters)
   in a pi home with the shim, one without and one with a no-op extension instead (what pi itself spends
   on loading any extension), in rotating order; wall time of ``pi -p`` and its CPU
   (``wait4`` rusage: pi plus the tool commands it reaped). The bridge is a separate process; its CPU
   is reported beside it, as the bridge itself logs it at exit (``bridge exiting``, ``cpu_s``), so no
   variant has a watcher polling /proc beside it (one used to scan all of /proc every 20 ms during the
   runs *without* the shim, ~10 % of a core against that baseline on a 2-vCPU machine).
   A fourth home runs the default set-up: the shim hands its lines to the machine service over its socket
   (the service runs between runs, as on a user's machine); its target is against the no-op extension in the
   same rounds (the service's own CPU per run is section 12's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Row, median, pair_ratios, ratios_note, run_tree_s
from integration_tests.harness.pi_proc import CACHE, FakeLLM, PiHome, PiProc, pi_bin

RUN_TIMEOUT = 180.0


def pick_version() -> str:
    for v in ("1.5.2", "0.73.1"):
        if pi_bin(v).exists():
            return v
    raise RuntimeError(f"no pi installed under {CACHE}: run bash integration_tests/setup_env.sh")


class PrintRun(PiProc):
    """``pi -p PROMPT``, reaped with ``wait4`` so its CPU time is known after it exits."""

    mode = "print"

    def __init__(self, home: PiHome, version: str, prompt: str):
        super().__init__(home, version, home.cwd, None, ())
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv + ["-p", prompt],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
        )
        self.rc: int | None = None
        self.wall = 0.0
        self.cpu = 0.0

    def pi_pid(self) -> int | None:
        return self.proc.pid if self.rc is None else None

    def wait(self, timeout: float = RUN_TIMEOUT) -> None:
        killer = threading.Timer(timeout, self.proc.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(self.proc.pid, 0)
        finally:
            killer.cancel()
        self.proc.returncode = self.rc = os.waitstatus_to_exitcode(status)
        self.wall = time.monotonic() - self.t0
        self.cpu = ru.ru_utime + ru.ru_stime

    def kill(self) -> None:
        if self.rc is None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class WireCounter:
    """A WebSocket client of the agent link (compression off) counting bytes per frame type."""

    def __init__(self, url: str, on_end=None):
        from websockets.sync.client import connect

        self.on_end = on_end
        self.ws = connect(url, compression=None, max_size=None, open_timeout=10)
        self.bytes: dict[str, int] = {}
        self.count: dict[str, int] = {}
        self.ended = threading.Event()
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                data = raw.encode() if isinstance(raw, str) else raw
                n = len(data)
                wire = n + (2 if n < 126 else 4 if n < 65536 else 10)  # server frames are unmasked
                t = json.loads(data).get("type", "?")
                self.bytes[t] = self.bytes.get(t, 0) + wire
                self.count[t] = self.count.get(t, 0) + 1
                if t == "init_state":
                    self.ready.set()
                if t == "agent_end" and not self.ended.is_set():
                    if self.on_end:
                        self.on_end()
                    self.ended.set()
        except Exception:  # noqa: BLE001 - the bridge closing ends the reader
            self.ended.set()

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass


def _setup(tmp: Path) -> tuple[FakeLLM, PiHome]:
    """The pi home with the shim; its pi run a bridge child each (``PI_SOCKET_MODE=bridge``): these sections read
    that process's CPU (the machine service's figures: bench/hosting.py)."""
    llm = FakeLLM(tmp)
    try:
        home = PiHome(tmp / "with", llm)
    except Exception:
        llm.close()
        raise
    home.env["PI_SOCKET_MODE"] = "bridge"
    return llm, home


def streaming(smoke: bool, reps: int | None, log=print) -> list[Row]:
    version = pick_version()
    sizes = [1_000, 100_000, 1_000_000] if not smoke else [1_000, 10_000, 30_000]
    labels = ["1 KB", "100 KB", "1 MB"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    llm, home = _setup(tmp)
    rows: list[Row] = []
    results = {}
    try:
        for label, size in zip(labels, sizes, strict=True):
            text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
            llm.reset()
            llm.script(
                [
                    {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 2"}}], "delay": 0},
                    {"text": text, "chunk": 16, "delay": 0},
                ]
            )
            run = PrintRun(home, version, "stream it")
            box: dict[str, float] = {}
            client = None
            try:
                run.wait_bridge(timeout=30)
                bridge = run.bridge_pid()
                client = WireCounter(
                    run.url, on_end=lambda box=box, pid=bridge: box.__setitem__("end", run_tree_s([pid]))
                )
                client.ready.wait(10)
                cpu_at_connect = run_tree_s([bridge])
                run.wait()
                client.ended.wait(10)
                time.sleep(0.3)
            finally:
                if client:
                    client.close()
                run.kill()
            n = client.count.get("message_update", 0)
            b = client.bytes.get("message_update", 0)
            events = sum(client.count.values())
            bridge_cpu = box.get("end", 0.0) - cpu_at_connect  # connect .. agent_end: forwarding only
            results[label] = dict(n=n, per=b / max(1, n), events=events, cpu=bridge_cpu)
            log(
                f"  stream {label} (pi {version}): {n} message_update, {b / max(1, n):.0f} B each, "
                f"bridge {1e6 * bridge_cpu / max(1, events):.0f} µs/event, pi rc {run.rc}, wall {run.wall:.1f}s"
            )
    finally:
        llm.close()
        shutil.rmtree(tmp, ignore_errors=True)
    base = results["1 KB"]["per"]
    for label in labels:
        r = results[label]
        rows.append(
            Row(
                "2 streaming",
                f"wire bytes per message_update, {label} reply (pi {version})",
                r["per"],
                "B",
                "1 KB reply",
                base,
                "<= 400 B, constant",
                met=r["per"] <= 400 and r["per"] <= 1.1 * base,
                note=f"{r['n']:,} updates of 16 chars",
            )
        )
    for label in labels:
        r = results[label]
        rows.append(
            Row(
                "2 streaming",
                f"bridge CPU per forwarded event, {label} reply",
                1e6 * r["cpu"] / max(1, r["events"]),
                "µs",
                "1 KB reply",
                1e6 * results["1 KB"]["cpu"] / max(1, results["1 KB"]["events"]),
                note=f"{r['events']:,} frames to 1 client",
            )
        )
    return rows


NOOP_EXTENSION = 'export default function (pi: any) {\n\tpi.on("session_start", () => undefined);\n}\n'


def noop_extension_home(root: Path, llm: FakeLLM) -> PiHome:
    """A pi home without the shim but with a one-handler extension, loaded the way the shim is (a package in
    settings.json): what pi itself spends on loading any extension, which the shim cannot avoid."""
    home = PiHome(root, llm)
    home.run_installer("uninstall")
    pkg = root / "noop-extension"
    (pkg / "src").mkdir(parents=True)
    (pkg / "package.json").write_text(
        json.dumps({"name": "noop", "private": True, "type": "module", "pi": {"extensions": ["./src/index.ts"]}})
    )
    (pkg / "src" / "index.ts").write_text(NOOP_EXTENSION)
    settings_path = home.agent / "settings.json"
    settings = json.loads(settings_path.read_text())
    settings["packages"] = [*settings.get("packages", []), str(pkg)]
    settings_path.write_text(json.dumps(settings, indent=2))
    return home


def exit_cpu(run: PrintRun, timeout: float = 10.0) -> float | None:
    """The CPU the bridge of ``run`` logged when it exited (``bridge exiting``, ``cpu_s``), read after pi exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in run.bridge_log():
            if rec.get("msg") == "bridge exiting":
                return rec.get("cpu_s")
        time.sleep(0.05)
    return None


def overhead(smoke: bool, reps: int | None, log=print) -> list[Row]:
    version = pick_version()
    tools, tokens = (5, 200) if smoke else (20, 2000)
    reps = reps or (1 if smoke else 25)  # rounds: one pair's ratio swings ±10 % on this machine
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    llm, with_shim = _setup(tmp)
    res: dict[str, dict[str, list[float]]] = {
        "with": {"wall": [], "cpu": [], "bridge": []},
        "service": {"wall": [], "cpu": []},
        "without": {"wall": [], "cpu": []},
        "noop": {"wall": [], "cpu": []},
    }
    service = None
    try:
        without = PiHome(tmp / "without", llm)
        without.run_installer("uninstall")
        noop = noop_extension_home(tmp / "noop", llm)
        # The default set-up: the shim hands pi's lines to the machine service over its socket (the service,
        # started by rep 0's pi, keeps running between runs, as it does on a user's machine).
        service = PiHome(tmp / "service", llm)
        service.env.pop("PI_SOCKET_MODE", None)
        script = [
            {"tool_calls": [{"name": "bash", "arguments": {"command": f"echo step {i}"}}], "delay": 0}
            for i in range(tools)
        ]
        script.append({"text": "tok " * tokens, "chunk": 4, "delay": 0})
        for rep in range(reps + 1):  # rep 0 warms caches (node compile cache, page cache) and is dropped
            order = [("with", with_shim), ("service", service), ("without", without), ("noop", noop)]
            order = order[rep % 4 :] + order[: rep % 4]  # each variant in each position in turn
            for name, home in order:
                llm.reset()
                llm.script(script)
                run = PrintRun(home, version, "run the script")
                try:
                    run.wait()  # no watcher thread beside any variant
                finally:
                    run.kill()
                bridge_cpu = exit_cpu(run) if name == "with" else None
                served = len(llm.requests())
                if run.rc != 0 or served != tools + 1:
                    raise RuntimeError(f"pi -p ({name} shim) rc={run.rc}, {served} LLM requests (want {tools + 1})")
                if rep == 0:
                    continue
                res[name]["wall"].append(run.wall)
                res[name]["cpu"].append(run.cpu)
                if name == "with":
                    res[name]["bridge"].append(bridge_cpu)
                log(
                    f"  overhead rep{rep} {name:7s}: wall {run.wall:.2f}s cpu {run.cpu:.2f}s"
                    + (f" bridge {bridge_cpu or 0.0:.2f}s" if name == "with" else "")
                )
    finally:
        if service is not None:
            service.stop_service()
        llm.close()
        shutil.rmtree(tmp, ignore_errors=True)
    w, wo = res["with"], res["without"]
    sv = res["service"]
    sv_pair = {k: median(pair_ratios(sv[k], wo[k])) for k in ("wall", "cpu")}
    sv_own = {k: median(pair_ratios(sv[k], res["noop"][k])) for k in ("wall", "cpu")}
    sec = "3 overhead on pi"
    what = f"pi {version} -p, {tools} tool calls + {tokens} streamed tokens"
    # Each repetition ran both homes back to back (order alternating): the ratio shown is the median of
    # those per-pair ratios, steadier on a shared machine than the ratio of the two medians.
    pairs = {k: pair_ratios(w[k], wo[k]) for k in ("wall", "cpu")}
    pair = {k: median(pairs[k]) for k in pairs}
    spread = {k: ratios_note("per-pair ratios", pairs[k]) for k in pairs}
    n = res["noop"]
    noop_pair = {k: median(pair_ratios(n[k], wo[k])) for k in ("wall", "cpu")}
    own = {k: median(pair_ratios(w[k], n[k])) for k in ("wall", "cpu")}  # the shim beyond pi's extension loading
    for k in spread:
        spread[k] = f"{spread[k]}; against the no-op extension {own[k]:.2f}×"
    return [
        Row(
            sec,
            f"wall time, without shim ({what})",
            median(wo["wall"]),
            "s",
            "without shim",
            median(wo["wall"]),
            reps=reps,
        ),
        Row(
            sec,
            "wall time, with shim",
            median(w["wall"]),
            "s",
            "without shim",
            median(wo["wall"]),
            "<= 1.05x",
            met=pair["wall"] <= 1.05,
            reps=reps,
            paired_ratio=pair["wall"],
            note=spread["wall"],
        ),
        Row(
            sec,
            "pi CPU (user+sys, incl. tool commands), without shim",
            median(wo["cpu"]),
            "s",
            "without shim",
            median(wo["cpu"]),
            reps=reps,
        ),
        Row(
            sec,
            "pi CPU, with shim",
            median(w["cpu"]),
            "s",
            "without shim",
            median(wo["cpu"]),
            "<= 1.05x",
            met=pair["cpu"] <= 1.05,
            reps=reps,
            paired_ratio=pair["cpu"],
            note=spread["cpu"],
        ),
        Row(
            sec,
            "wall time, with shim, agents served by the machine service (the default)",
            median(sv["wall"]),
            "s",
            "no-op extension",
            median(res["noop"]["wall"]),
            "<= 1.05x",
            met=sv_own["wall"] <= 1.05,
            reps=reps,
            paired_ratio=sv_own["wall"],
            note=f"against pi without any extension {sv_pair['wall']:.2f}×",
        ),
        Row(
            sec,
            "pi CPU, with shim, agents served by the machine service",
            median(sv["cpu"]),
            "s",
            "no-op extension",
            median(res["noop"]["cpu"]),
            "<= 1.05x",
            met=sv_own["cpu"] <= 1.05,
            reps=reps,
            paired_ratio=sv_own["cpu"],
            note=f"against pi without any extension {sv_pair['cpu']:.2f}×",
        ),
        Row(
            sec,
            "wall time, with a no-op extension instead (pi's own cost of loading any extension)",
            median(n["wall"]),
            "s",
            "without shim",
            median(wo["wall"]),
            reps=reps,
            paired_ratio=noop_pair["wall"],
        ),
        Row(
            sec,
            "pi CPU, with a no-op extension instead",
            median(n["cpu"]),
            "s",
            "without shim",
            median(wo["cpu"]),
            reps=reps,
            paired_ratio=noop_pair["cpu"],
        ),
        Row(
            sec,
            "bridge process CPU per run (separate process)",
            median(w["bridge"]),
            "s",
            "pi CPU without shim",
            median(wo["cpu"]),
            reps=reps,
            note="Python start-up + history/state + forwarding",
        ),
    ]
