"""Target 4: registry scale on a real ``python -m hypivisor`` (pinned to CPU1).

* N agents (one ``/ws`` connection each, as bridges do) register while D dashboards are connected:
  time until every agent has its reply and every dashboard has seen every ``node_joined``;
* then every agent heartbeats (a changed ``activity`` each time, so each one is broadcast) while M more
  agents join at a steady rate: join -> ``node_joined`` at each dashboard p50/p99, heartbeat ->
  ``node_updated`` p99, hypivisor CPU and RSS;
* ``list_directories`` on a folder with 10,000 sub-folders and ``list_nodes`` sent right after it on the
  same connection: ``list_nodes`` latency against the same call alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, Row, cpu_s, free_port, median, pct, pin, raise_nofile, rss, wait_port
from bench.wsmini import connect_many


class Rpc:
    """A ``/ws`` connection speaking JSON-RPC, recording event arrival times."""

    def __init__(self, on_event=None):
        self.waiters: dict = {}
        self.on_event = on_event
        self.c = None
        self.n = 0

    def on_msg(self, op: int, payload: bytes) -> None:
        now = time.monotonic()
        msg = json.loads(payload)
        if "event" in msg:
            if self.on_event:
                self.on_event(msg, now)
            return
        fut = self.waiters.pop(msg.get("id"), None)
        if fut is not None and not fut.done():
            fut.set_result((msg, now))

    def call_nowait(self, method: str, params: dict | None = None) -> asyncio.Future:
        self.n += 1
        rid = f"r{self.n}"
        fut = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        self.c.send(json.dumps({"id": rid, "method": method, "params": params or {}}).encode())
        return fut

    async def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        msg, _ = await asyncio.wait_for(self.call_nowait(method, params), timeout)
        return msg


async def open_rpc(port: int, n: int, on_event=None) -> list[Rpc]:
    rpcs = [Rpc(on_event) for _ in range(n)]
    it = iter(rpcs)
    conns = await connect_many(port, "/ws", n, on_msg=lambda op, p: None)
    for r, c in zip(rpcs, conns):
        r.c = c
        c.on_msg = r.on_msg
    del it
    return rpcs


def params(i: int, port: int) -> dict:
    return {"id": f"agent-{i:05d}", "machine": "bench", "cwd": f"/srv/p{i % 50}", "port": 20000 + i,
            "host": "127.0.0.1", "pid": 100000 + i, "activity": "idle"}


async def run(smoke: bool, log=print) -> list[Row]:
    raise_nofile()
    pin(os.getpid(), 0)
    n_agents, n_dash, n_join, join_rate = (50, 5, 20, 50.0) if smoke else (1000, 50, 100, 20.0)
    n_dirs = 200 if smoke else 10_000
    home = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    big = home / "big"
    big.mkdir()
    for i in range(n_dirs):
        (big / f"folder-{i:05d}").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPI_", "TMUX"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), HYPI_DASHBOARD_DIR=str(home / "none"))
    proc = subprocess.Popen([sys.executable, "-m", "hypivisor", "--host", "127.0.0.1", "-p", str(port),
                             "--dashboard-port", "0", "--log-level", "warning"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[Row] = []
    sec = "4 registry"
    try:
        wait_port(port, proc=proc)
        pin(proc.pid, 1)
        # ---- dashboards
        joined: dict[str, list[float]] = {}
        updated: dict[tuple[str, str], list[float]] = {}

        def on_event(msg: dict, now: float) -> None:
            ev = msg["event"]
            if ev == "node_joined":
                joined.setdefault(msg["node"]["id"], []).append(now)
            elif ev == "node_updated":
                updated.setdefault((msg["node"]["id"], msg["node"].get("session_name")), []).append(now)

        dashboards = await open_rpc(port, n_dash, on_event)
        rss0, cpu0 = rss(proc.pid), cpu_s(proc.pid)
        # ---- burst: every agent registers at once
        agents = await open_rpc(port, n_agents)
        t0 = time.monotonic()
        done = []
        for k in range(0, n_agents, 100):  # waves of 100, as bridges reconnecting after a hypivisor restart
            futs = [a.call_nowait("register", params(k + i, port)) for i, a in enumerate(agents[k:k + 100])]
            done += await asyncio.wait_for(asyncio.gather(*futs), 120)
        t_replies = max(t for _, t in done) - t0
        assert all("result" in m for m, _ in done), [m for m, _ in done if "result" not in m][:3]
        deadline = time.monotonic() + 60
        while sum(len(v) for v in joined.values()) < n_agents * n_dash and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        seen = sum(len(v) for v in joined.values())
        t_all = max(max(v) for v in joined.values()) - t0
        cpu_burst = cpu_s(proc.pid) - cpu0
        log(f"  registry burst: {n_agents} registered in {t_replies:.2f}s, all joins seen {t_all:.2f}s "
            f"({seen}/{n_agents * n_dash})")
        # ---- steady state: heartbeats (each changes activity) + paced joins
        hb_interval = 2.0 if smoke else 10.0  # the bridge's heartbeat interval is TTL/3 = 10 s
        secs = 3.0 if smoke else 10.0
        loop = asyncio.get_running_loop()
        hb_sent: dict[tuple[str, str], float] = {}
        join_sent: dict[str, float] = {}
        extra = await open_rpc(port, n_join)
        c0, w0 = cpu_s(proc.pid), time.monotonic()

        async def heartbeats() -> None:
            start = loop.time()
            total = int(n_agents * secs / hb_interval)
            for k in range(total):
                i = k % n_agents
                due = start + k * hb_interval / n_agents
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                name = f"session {k}"  # a changed field: every heartbeat is broadcast
                hb_sent[(f"agent-{i:05d}", name)] = time.monotonic()
                agents[i].call_nowait("heartbeat", {"id": f"agent-{i:05d}", "session_name": name})

        async def joins() -> None:
            start = loop.time()
            for j, a in enumerate(extra):
                due = start + j / join_rate
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                p = params(n_agents + j, port)
                join_sent[p["id"]] = time.monotonic()
                a.call_nowait("register", p)

        await asyncio.wait_for(asyncio.gather(heartbeats(), joins()), secs + 30)
        await asyncio.sleep(1.0)
        steady_secs = time.monotonic() - w0
        cpu_steady = cpu_s(proc.pid) - c0
        rss1 = rss(proc.pid)
        join_lat = [1000 * (t - join_sent[nid]) for nid, ts in joined.items() if nid in join_sent for t in ts]
        hb_lat = [1000 * (t - hb_sent[k]) for k, ts in updated.items() if k in hb_sent for t in ts]
        n_events = len(hb_sent) + len(join_sent)
        # ---- list_directories vs list_nodes on one connection
        probe = (await open_rpc(port, 1))[0]
        alone = []
        for _ in range(5):
            t = time.monotonic()
            await probe.call("list_nodes")
            alone.append(1000 * (time.monotonic() - t))
        behind, order_ok, dir_ms = [], 0, []
        for _ in range(3 if smoke else 5):
            t = time.monotonic()
            f_dir = probe.call_nowait("list_directories", {"path": str(big)})
            f_nodes = probe.call_nowait("list_nodes")
            (m_nodes, t_nodes), (m_dir, t_dir) = await asyncio.wait_for(asyncio.gather(f_nodes, f_dir), 60)
            assert len(m_dir["result"]["directories"]) == n_dirs, str(m_dir)[:200]
            behind.append(1000 * (t_nodes - t))
            dir_ms.append(1000 * (t_dir - t))
            order_ok += t_nodes <= t_dir
        kicked_live = sum(1 for d in dashboards if d.c.transport.is_closing())
        for c in dashboards + agents + extra + [probe]:
            c.c.close()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
    p99_join = pct(join_lat, 99)
    kicked = kicked_live
    rows += [
        Row(sec, f"register {n_agents} agents in waves of 100, {n_dash} dashboards: all replies", t_replies * 1000, "ms",
            note=f"{n_agents / t_replies:,.0f} registrations/s"),
        Row(sec, f"... until every dashboard saw every node_joined", t_all * 1000, "ms",
            note=f"{seen:,} of {n_agents * n_dash:,} events; hypivisor CPU {cpu_burst * 1000:.0f} ms "
                 f"= {1e6 * cpu_burst / max(1, seen):.1f} µs per delivered event"),
        Row(sec, f"join -> node_joined at {n_dash} dashboards, p50 ({join_rate:g} joins/s + heartbeats)",
            pct(join_lat, 50), "ms"),
        Row(sec, f"join -> node_joined at {n_dash} dashboards, p99", p99_join, "ms", target="<= 50 ms",
            met=p99_join <= 50, note=f"{kicked} dashboards disconnected as too slow" if kicked else ""),
        Row(sec, f"heartbeat -> node_updated p99 ({len(hb_sent) / secs:,.0f} heartbeats/s)", pct(hb_lat, 99), "ms"),
        Row(sec, f"hypivisor CPU, steady state ({n_agents} agents, {n_dash} dashboards)",
            100 * cpu_steady / steady_secs, "% of a core",
            note=f"{1e6 * cpu_steady / max(1, n_events * n_dash):.1f} µs per delivered event"),
        Row(sec, f"hypivisor RSS growth with {n_agents + n_join} agents + {n_dash} dashboards",
            (rss1 - rss0) / 2**20, "MiB", note=f"RSS {rss1 / 2**20:.0f} MiB"),
        Row(sec, "list_nodes alone, median", median(alone), "ms"),
        Row(sec, f"list_nodes sent right after list_directories ({n_dirs:,} entries), median", median(behind), "ms",
            "list_nodes alone", median(alone), "answered before list_directories",
            met=order_ok == len(behind),
            note=f"answered first {order_ok}/{len(behind)}; list_directories took {median(dir_ms):.0f} ms"),
    ]
    return rows
