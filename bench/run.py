"""``python -m bench.run [--smoke] [--only SECTION,...] [--reps N]``: run the benchmark suite, print one table.

Sections (each compares figures measured side by side in this run; medians of repetitions):
  relay     1  /ws/agent/<id> through the hypivisor (direct and dial-back links) vs nginx vs direct
  stream    2  wire bytes and bridge CPU per streamed token (real pi on the fake LLM)
  overhead  3  the same scripted pi run with and without the pi-socket shim
  registry  4  1,000 agents + 50 dashboards; list_directories vs list_nodes; 10,000 agents vs 1,000
  history   5  init_state and paging on a real bridge
  pide      6  Pi-DE in headless Chromium: 10,000 messages (scripted and from a real bridge), streaming frames,
               a 10,000-node roster in chunks against one frame per node, first-load size against React alone
  approvals 7  the approval gate on real pi: time added per call a rule allows; question and decision round
               trips through the hypivisor
  inbox     8  Pi-DE's inbox in headless Chromium: 1,000 items across 200 agents
  push      9  Web Push: an approval asked in pi → its push at a local push service, beside the prompt round trip
  watchdogs 10 the inbox tracker's and watchdogs' CPU per pi event against a real bridge's per forwarded event
  sessions  11 the session index over 1 GB of generated sessions: MB/s, size, query p50/p99 beside ripgrep, open 10k
  hosting   12 pi served by the machine service against a bridge child per pi: RSS per agent (10 agents), CPU added
               to one pi -p run, pi start → roster p50/p99
  cluster   13 3 hypivisors on a 3-node NATS cluster (started by the section) against one hypivisor: 10,000 agents +
               50 dashboards, join → every dashboard p99, CPU per delivered event, relay across hypivisors, fail-over
               after a SIGKILL

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` (git-ignored) and prints the table.
``--smoke`` uses tiny sizes so the whole suite runs in well under two minutes (CI:
``integration_tests/test_bench_smoke.py``); smoke figures are not meaningful, only complete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

from bench.common import REPO, Row, fmt

SECTIONS = [
    "relay",
    "stream",
    "overhead",
    "registry",
    "history",
    "pide",
    "approvals",
    "inbox",
    "push",
    "watchdogs",
    "sessions",
    "hosting",
    "cluster",
]
# rows each section must produce (integration_tests/test_bench_smoke.py checks them)
EXPECTED_ROWS = {
    "1 proxy": 22,
    "2 streaming": 6,
    "3 overhead on pi": 9,
    "4 registry": 13,
    "5 history": 12,
    "6 Pi-DE": 7,
    "7 approval gate": 9,
    "8 Pi-DE inbox": 2,
    "9 Web Push": 3,
    "10 watchdogs": 3,
    "11 sessions": 9,
    "12 machine hosting": 7,
    "13 cluster": 12,
}
RESULTS = REPO / "bench" / "results"


def machine_note() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, load average at start {load[0]:.1f}"


async def run_section(name: str, args, log) -> list[Row]:
    if name == "relay":
        from bench import relay

        return await relay.run(args.smoke, args.reps or (1 if args.smoke else 7), log)
    if name == "registry":
        from bench import registry

        return await registry.run(args.smoke, log, args.reps)
    if name == "history":
        from bench import history

        return await history.run(args.smoke, log, args.reps)
    if name in ("stream", "overhead"):
        from bench import pirun

        fn = pirun.streaming if name == "stream" else pirun.overhead
        return await asyncio.to_thread(fn, args.smoke, args.reps, log)
    if name == "pide":
        from bench import pide

        return await asyncio.to_thread(pide.run, args.smoke, log)
    if name == "approvals":
        from bench import approvals

        return await asyncio.to_thread(approvals.run, args.smoke, args.reps, log)
    if name == "inbox":
        from bench import inbox

        return await asyncio.to_thread(inbox.run, args.smoke, log)
    if name == "push":
        from bench import push

        return await asyncio.to_thread(push.run, args.smoke, args.reps, log)
    if name == "watchdogs":
        from bench import watchdog

        return await asyncio.to_thread(watchdog.run, args.smoke, args.reps, log)
    if name == "sessions":
        from bench import sessions

        return await asyncio.to_thread(sessions.run, args.smoke, args.reps, log)
    if name == "hosting":
        from bench import hosting

        return await asyncio.to_thread(hosting.run, args.smoke, args.reps, log)
    if name == "cluster":
        from bench import cluster

        return await cluster.run(args.smoke, args.reps, log)
    raise ValueError(name)


TARGET_LIMIT = re.compile(r"^\s*(<=|>=)\s*([\d,]+(?:\.\d+)?)\s*([^\s,(]+)")


def compile_bytecode() -> None:
    """Write the bytecode of the processes the sections start (bridge, hypivisor, fake LLM), as an install has.

    pip compiles a wheel at install time, and a checkout writes ``__pycache__`` on first import, unless
    ``PYTHONDONTWRITEBYTECODE`` is set, as it is on these machines: then every bridge started with every pi
    recompiled ``pi_socket`` (~25-50 ms of CPU per start) and the overhead on pi measured that instead."""
    import compileall

    for pkg in ("pi_socket", "hypivisor", "bench"):
        compileall.compile_dir(str(REPO / pkg), quiet=1, rx=re.compile(r"[/\\](tests|node_modules)[/\\]"))


def ratio_to_target(r: Row) -> None:
    """A figure with no same-run reference but a limit in its unit ("<= 50 ms") is shown against that limit."""
    if r.ratio is not None or r.value is None or r.ref or not r.target:
        return
    m = TARGET_LIMIT.match(r.target)
    if m and m.group(3) == r.unit:
        r.ref, r.ref_value = "target", float(m.group(2).replace(",", ""))


def table(rows: list[Row]) -> str:
    out = [
        "| § | figure | value | unit | ratio | vs | target | met | reps | note |",
        "|---|---|---:|---|---:|---|---|---|---:|---|",
    ]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
        out.append(
            f"| {r.section} | {r.metric} | {fmt(r.value)} | {r.unit} | {ratio} | {r.ref} | {r.target} | "
            f"{met} | {r.reps} | {r.note} |"
        )
    return "\n".join(out)


async def amain(args) -> int:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    note = machine_note()
    rows: list[Row] = []
    errors: list[str] = []
    sections = args.only or SECTIONS
    compile_bytecode()

    def log(msg: str) -> None:
        print(msg, flush=True)

    for name in sections:
        t0 = time.monotonic()
        log(f"== {name}")
        try:
            got = await run_section(name, args, log)
            rows += got
        except Exception as exc:  # noqa: BLE001 - one failing section must not hide the others
            errors.append(f"{name}: {exc!r}")
            traceback.print_exc()
            rows.append(Row(name, f"{name} section failed: {exc!r}"[:200], None, "", met=False))
        log(f"   ({time.monotonic() - t0:.0f} s)")
    for r in rows:
        ratio_to_target(r)
    cmd = "make bench" + (" SMOKE=1" if args.smoke else "")
    if args.only:
        cmd = f"python -m bench.run {' '.join(sys.argv[1:])}"
    md = f"Run {started}; `{cmd}`; {note}.\n\n" + table(rows) + "\n"
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.md").write_text(md)
    (results / "latest.json").write_text(
        json.dumps(
            {
                "started": started,
                "command": cmd,
                "machine": note,
                "smoke": args.smoke,
                "errors": errors,
                "rows": [r.as_dict() for r in rows],
            },
            indent=1,
            default=str,
        )
    )
    print()
    print(md)
    missed = [r.metric for r in rows if r.met is False]
    print(f"targets: {sum(r.met is True for r in rows)} met, {len(missed)} missed; errors: {len(errors)}")
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the suite runs")
    ap.add_argument("--only", type=lambda s: s.split(","), default=None, help=",".join(SECTIONS))
    ap.add_argument("--results-dir", default=str(RESULTS), help="where latest.{md,json} go")
    ap.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions (default per section: relay 7, overhead 25 rounds, registry 3, history 5, approvals 15 "
        "rounds; smoke 1)",
    )
    args = ap.parse_args()
    try:
        import uvloop  # the load generators are instruments: keep them cheap

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    return asyncio.run(amain(args))  # every section stops what it started in its own finally blocks


if __name__ == "__main__":
    raise SystemExit(main())
