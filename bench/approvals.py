"""Section 7: the approval gate (specs/approvals.md) on real pi, the fake LLM and, for the round trips, a real
hypivisor.

a) Time a call spends in the gate when a rule allows it, against the same calls with the policy ``off``.
   Two ``pi --mode rpc`` processes of the same version share one pi home with the shim, a rules file
   ``{"policy": "writes", "rules": [{"tool": "bash", "prefix": "true"}]}`` and a probe extension; one runs
   with ``PI_SOCKET_APPROVAL=off``. Each round sends both (order alternating) the same prompt, to which the
   fake LLM replies with N bash calls ``true <i>`` in one message. pi prepares the calls of one message one
   after another (``tool_execution_start``, argument validation, the ``tool_call`` handlers in load order: the
   probe's and the gate) and only then runs them all at once. The probe's ``tool_call`` handler notes
   ``performance.now()`` for each call, so each gap between two consecutive calls holds one preparation with
   exactly one pass through the gate, and no tool execution (process spawning, the noisiest part of a bash
   call, comes after the last gap). Per call = the median gap of a round (a preemption or a garbage collection
   lands in a few gaps, not in the median); the gate's added time = the difference of the two processes'
   figures in the same round, median over rounds. Timestamps on pi's RPC stdout cannot do this: pi 1.x writes
   its stdout through a promise chain, so a reply's events reach the reader in one chunk. Every gated round is
   checked against the audit log (one ``by: "rule"`` line per call), so the figure cannot silently measure a
   gate that never ran. What the gate defers (appending the audit line in libuv's thread pool, the lazy line to
   the bridge) does not hold a call up, but on two cores the pool's writes compete with pi's main thread; the
   note gives the mean over the whole preparation (first call to last / (N-1)), which includes that and every
   disturbance, as the conservative figure.
b) Round trips through the hypivisor: a real ``python -m hypivisor``, a real pi (RPC mode, policy ``writes``)
   registered with it, and a dashboard client on the hypivisor's ``/ws/agent/<node>`` proxy. Per sample the
   client sends a prompt ``TOOLCALL: date +%s.%N`` (the fake LLM makes that a bash call, which the policy asks
   about), and answers each question with ``allow`` as soon as it arrives. Measured, all on this machine's
   wall clock: the approval_request's ``queued_at`` (set by the shim when it makes the question, inside pi's
   ``tool_call``; whole milliseconds, so up to 1 ms early) → the frame's arrival at the client; the client sending ``approval_decision`` → the clock
   reading the command itself printed (the first instant the tool is running, including pi spawning the
   shell, which any bash call pays; read back from the ``tool_execution_end`` result). Reference, same
   samples: prompt sent → its ``ack`` (pi accepted it), the same path through proxy, bridge and shim and back.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import Row, free_port, median, pair_ratios, pct, ratios_note, start_hypivisor, stop_process, wait_port
from integration_tests.harness.pi_proc import CACHE, AgentClient, FakeLLM, PiHome, RpcPi, pi_bin

SEC = "7 approval gate"
RULES = {"policy": "writes", "rules": [{"tool": "bash", "prefix": "true"}]}
WAIT = 60.0  # bound on any single wait for pi


def versions() -> tuple[str, str]:
    """The newest installed pi and the oldest supported one (0.73.1; the newest again when it is missing)."""
    installed = [v for v in ("1.6.0", "1.5.2", "0.73.1") if pi_bin(v).exists()]
    if not installed:
        raise RuntimeError(f"no pi installed under {CACHE}: run bash integration_tests/setup_env.sh")
    return installed[0], "0.73.1" if "0.73.1" in installed else installed[0]


class TimedClient(AgentClient):
    """An agent-link client whose every frame carries ``_t``, the wall-clock time it was received."""

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                t = time.time()
                frame = json.loads(raw)
                frame["_t"] = t
                with self._cv:
                    self.frames.append(frame)
                    self._cv.notify_all()
        except Exception:  # noqa: BLE001 - a closed connection ends the reader
            pass
        with self._cv:
            self.closed = True
            self._cv.notify_all()


def audit_lines(pi: RpcPi) -> list[dict]:
    path = pi.log_dir / "approvals.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


PROBE_ENV = "BENCH_GATE_PROBE"
PROBE_EXTENSION = """import * as fs from "node:fs";
// Bench probe: the time each tool_call reaches this handler; written to $BENCH_GATE_PROBE when the run ends.
export default function (pi: any) {
\tlet times: number[] = [];
\tpi.on("tool_call", () => {
\t\ttimes.push(performance.now());
\t\treturn undefined;
\t});
\tpi.on("agent_end", () => {
\t\tconst out = process.env.BENCH_GATE_PROBE;
\t\tif (out) fs.writeFileSync(out, JSON.stringify(times));
\t\ttimes = [];
\t});
}
"""


def add_probe(home: PiHome) -> None:
    """Install the probe extension beside the shim, as a package in settings.json (how the shim is installed)."""
    pkg = home.root / "gate-probe"
    (pkg / "src").mkdir(parents=True)
    (pkg / "package.json").write_text(
        json.dumps({"name": "gate-probe", "private": True, "type": "module", "pi": {"extensions": ["./src/index.ts"]}})
    )
    (pkg / "src" / "index.ts").write_text(PROBE_EXTENSION)
    settings_path = home.agent / "settings.json"
    settings = json.loads(settings_path.read_text())
    settings["packages"] = [*settings.get("packages", []), str(pkg)]
    settings_path.write_text(json.dumps(settings, indent=2))


def one_round(pi: RpcPi, probe: Path, llm: FakeLLM, n: int) -> dict:
    """One prompt whose reply makes ``n`` bash calls; per call, ms: ``gap`` (the median gap between consecutive
    tool_calls) and ``span`` (first to last / (n - 1))."""
    llm.script(
        [
            {"tool_calls": [{"name": "bash", "arguments": {"command": f"true {i}"}} for i in range(n)], "delay": 0},
            {"text": "done", "delay": 0},
        ]
    )
    probe.unlink(missing_ok=True)
    mark = len(pi.events)
    rid = pi.send({"type": "prompt", "message": "run them"})
    end = pi.until(lambda m: m.get("type") == "agent_end", timeout=WAIT)
    if end is None:
        raise RuntimeError(f"pi {pi.version}: no agent_end within {WAIT:g} s")
    evs = pi.events[mark:]
    refused = [m for m in evs if m.get("type") == "response" and m.get("id") == rid and not m.get("success")]
    if refused:
        raise RuntimeError(f"pi {pi.version} refused the prompt: {refused[0]}")
    kinds = [m.get("type") for m in evs]
    starts = [i for i, k in enumerate(kinds) if k == "tool_execution_start"]
    ends = [i for i, k in enumerate(kinds) if k == "tool_execution_end"]
    errors = [m for m in evs if m.get("type") == "tool_execution_end" and m.get("isError")]
    if len(starts) != n or len(ends) != n or errors:
        raise RuntimeError(
            f"pi {pi.version}: {len(starts)} starts, {len(ends)} ends, {len(errors)} errors (want {n}, {n}, 0)"
        )
    if min(ends) < max(starts):
        raise RuntimeError(
            f"pi {pi.version} ran a call before preparing the last one: the span would include execution"
        )
    deadline = time.monotonic() + 5
    while not probe.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    times = json.loads(probe.read_text())
    if len(times) != n:
        raise RuntimeError(f"pi {pi.version}: the probe saw {len(times)} tool_call events (want {n})")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {"span": (times[-1] - times[0]) / (n - 1), "gap": median(gaps)}


def gate_time(version: str, llm: FakeLLM, tmp: Path, n: int, rounds: int, log) -> dict[str, list[float]]:
    home = PiHome(tmp / f"gate-{version}", llm)
    add_probe(home)
    (home.agent / "hyper-pi-approvals.json").write_text(json.dumps(RULES))
    pis: dict[str, RpcPi] = {}
    probes = {name: home.root / f"probe-{name}.json" for name in ("off", "rule")}
    res: dict[str, list[float]] = {k: [] for k in ("off", "rule", "off_span", "rule_span")}
    try:
        pis["off"] = RpcPi(home, version, home.cwd, {"PI_SOCKET_APPROVAL": "off", PROBE_ENV: str(probes["off"])}, ())
        # the policy and the rule come from the rules file
        pis["rule"] = RpcPi(home, version, home.cwd, {PROBE_ENV: str(probes["rule"])}, ())
        for p in pis.values():
            p.wait_bridge()
        for rnd in range(rounds + 1):  # round 0 warms both (JIT, the audit log's folder) and is dropped
            order = ("off", "rule") if rnd % 2 == 0 else ("rule", "off")
            got = {}
            for name in order:
                llm.reset()
                before = len(audit_lines(pis[name]))
                got[name] = one_round(pis[name], probes[name], llm, n)
                want = n if name == "rule" else 0
                deadline = time.monotonic() + 5
                while len(audit_lines(pis[name])) - before < want and time.monotonic() < deadline:
                    time.sleep(0.02)
                new = audit_lines(pis[name])[before:]
                if len(new) != want or any(r.get("by") != "rule" or r.get("decision") != "allow" for r in new):
                    raise RuntimeError(f"pi {version} {name}: {len(new)} audit lines (want {want} allowed by the rule)")
            if rnd == 0:
                continue
            for name in got:
                res[name].append(got[name]["gap"])
                res[name + "_span"].append(got[name]["span"])
            log(
                f"  gate pi {version} round {rnd}: per call off {1000 * got['off']['gap']:.0f} µs, rule "
                f"{1000 * got['rule']['gap']:.0f} µs (span / calls {1000 * got['off']['span']:.0f}, "
                f"{1000 * got['rule']['span']:.0f})"
            )
    finally:
        for p in pis.values():
            p.stop(timeout=10)
    return res


def gate_rows(version: str, n: int, res: dict[str, list[float]]) -> list[Row]:
    off, rule = res["off"], res["rule"]
    reps = len(off)
    ratios = pair_ratios(rule, off)
    diffs = [r - o for r, o in zip(rule, off, strict=True)]
    added = median(diffs)
    spans = median([r - o for r, o in zip(res.get("rule_span", []), res.get("off_span", []), strict=True)])
    return [
        Row(
            SEC,
            f"preparing a bash call, policy off (pi {version}, {n} calls in one reply)",
            median(off),
            "ms",
            "policy off",
            median(off),
            reps=reps,
            note="median gap between consecutive tool_call events of a reply's preparation, inside pi",
        ),
        Row(
            SEC,
            f"preparing a bash call, policy writes + an allow rule (pi {version})",
            median(rule),
            "ms",
            "policy off",
            median(off),
            reps=reps,
            paired_ratio=median(ratios),
            note=ratios_note("per-round ratios", ratios, min_count=2),
        ),
        Row(
            SEC,
            f"time the gate adds to a call a rule allows (pi {version})",
            added,
            "ms",
            target="<= 1 ms",
            met=added <= 1.0,
            reps=reps,
            note=f"median of per-round differences, µs: {', '.join(f'{1000 * d:.0f}' for d in diffs)}; "
            f"first to last call / (calls - 1), with the deferred audit writes: {1000 * spans:+.0f} µs",
        ),
    ]


class Dashboard:
    """A client of one agent through the hypivisor's proxy, connected once the node is registered."""

    def __init__(self, url: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            c = None
            try:
                c = TimedClient(url)
                c.wait_for(lambda f: f.get("type") == "init_state", timeout=10)
                self.c = c
                return
            except Exception:  # noqa: BLE001 - the node may not be registered yet: retry, bounded
                if c is not None:
                    c.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def round_trips(version: str, llm: FakeLLM, tmp: Path, samples: int, log) -> dict[str, list[float]]:
    port = free_port()
    (tmp / "hv").mkdir(exist_ok=True)
    hv = start_hypivisor(port, tmp / "hv")
    pi = None
    dash = None
    out: dict[str, list[float]] = {"prompt": [], "ask": [], "run": [], "resolved": []}
    try:
        wait_port(port, proc=hv)
        home = PiHome(tmp / "rtt", llm)
        env = {"PI_SOCKET_APPROVAL": "writes", "HYPIVISOR_WS": f"ws://127.0.0.1:{port}/ws"}
        pi = RpcPi(home, version, home.cwd, env, ())
        pi.wait_bridge()
        dash = Dashboard(f"ws://127.0.0.1:{port}/ws/agent/{pi.node_id}")
        c = dash.c
        done = "agent_end" if version.startswith("0.") else "agent_settled"
        deadline = time.monotonic() + 30 + 2 * samples
        warm = 3
        for i in range(samples + warm):
            if time.monotonic() > deadline:
                raise RuntimeError(f"round trips: {i} of {samples + warm} samples within the time bound")
            llm.reset()
            mark = len(c.frames)
            pid = f"b{i}"
            t0 = time.time()
            c.send({"type": "prompt", "id": pid, "text": "TOOLCALL: date +%s.%N"})
            ack = c.wait_for(lambda f, pid=pid: f.get("type") == "ack" and f.get("id") == pid, timeout=WAIT, start=mark)
            req = c.wait_for(lambda f: f.get("type") == "approval_request", timeout=WAIT, start=mark)
            t1 = time.time()
            c.send({"type": "approval_decision", "id": req["id"], "decision": "allow"})
            resolved = c.wait_for(
                lambda f, rid=req["id"]: f.get("type") == "approval_resolved" and f.get("id") == rid,
                timeout=WAIT,
                start=mark,
            )
            end = c.wait_for(lambda f: f.get("type") == "tool_execution_end", timeout=WAIT, start=mark)
            c.wait_for(lambda f: f.get("type") == done, timeout=WAIT, start=mark)
            m = re.search(r"(\d{9,}\.\d+)", json.dumps(end.get("result")))
            if end.get("isError") or not m or resolved.get("decision") != "allow":
                raise RuntimeError(f"round trips: the allowed command did not run: {str(end)[:300]}")
            if i < warm:
                continue
            out["prompt"].append(1000 * (ack["_t"] - t0))
            out["ask"].append(1000 * (req["_t"] - float(req["queued_at"])))
            out["run"].append(1000 * (float(m.group(1)) - t1))
            out["resolved"].append(1000 * (resolved["_t"] - t1))
        log(
            f"  round trips pi {version} ({samples}): prompt p50 {pct(out['prompt'], 50):.2f} p99 "
            f"{pct(out['prompt'], 99):.2f} ms; ask p50 {pct(out['ask'], 50):.2f} p99 {pct(out['ask'], 99):.2f} ms; "
            f"run p50 {pct(out['run'], 50):.2f} p99 {pct(out['run'], 99):.2f} ms"
        )
    finally:
        if dash is not None:
            dash.c.close()
        if pi is not None:
            pi.stop(timeout=10)
        stop_process(hv)
    return out


def rtt_rows(version: str, out: dict[str, list[float]]) -> list[Row]:
    n = len(out["prompt"])
    p99 = {k: pct(v, 99) for k, v in out.items()}
    p50 = {k: pct(v, 50) for k, v in out.items()}
    return [
        Row(
            SEC,
            f"prompt → ack through the hypivisor's proxy, p99 (pi {version}, the reference)",
            p99["prompt"],
            "ms",
            "prompt round trip",
            p99["prompt"],
            reps=n,
            note=f"p50 {p50['prompt']:.2f} ms; max {max(out['prompt']):.2f} ms",
        ),
        Row(
            SEC,
            "tool_call → approval_request at a dashboard through the hypivisor, p99",
            p99["ask"],
            "ms",
            "prompt round trip",
            p99["prompt"],
            "<= 50 ms",
            met=p99["ask"] <= 50,
            reps=n,
            note=f"from the shim's queued_at; p50 {p50['ask']:.2f} ms; max {max(out['ask']):.2f} ms",
        ),
        Row(
            SEC,
            "approval_decision sent → the command running, p99",
            p99["run"],
            "ms",
            "prompt round trip",
            p99["prompt"],
            "<= 50 ms",
            met=p99["run"] <= 50,
            reps=n,
            note=f"to the command's own clock (includes pi spawning the shell); p50 {p50['run']:.2f} ms; "
            f"approval_resolved back at the client p50 {p50['resolved']:.2f} ms",
        ),
    ]


def run(smoke: bool, reps: int | None, log=print) -> list[Row]:
    newest, oldest = versions()
    n = 10 if smoke else 50
    rounds = reps or (1 if smoke else 15)
    samples = 5 if smoke else 100
    tmp = Path(tempfile.mkdtemp(prefix="bench-approvals-"))
    llm = FakeLLM(tmp)
    rows: list[Row] = []
    try:
        for v in (newest, oldest):
            rows += gate_rows(v, n, gate_time(v, llm, tmp, n, rounds, log))
        rows += rtt_rows(newest, round_trips(newest, llm, tmp, samples, log))
    finally:
        llm.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
