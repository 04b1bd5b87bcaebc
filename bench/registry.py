"""Target 4: registry scale on a real ``python -m hypivisor`` (pinned to CPU1), repeated ``reps`` times.

Each repetition starts a fresh hypivisor and measures:

* N agents (one ``/ws`` connection each, as bridges do) register while D dashboards are connected:
  time until every agent has its reply and every dashboard has seen every ``node_joined``;
* then every agent heartbeats (a changed ``session_name`` each time, so each one is broadcast) while M
  more agents join at a steady rate: join -> ``node_joined`` at each dashboard p50/p99, heartbeat ->
  ``node_updated`` p99, hypivisor CPU and RSS;
* ``list_directories`` on a folder with 10,000 sub-folders and ``list_nodes`` sent right after it on the
  same connection: ``list_nodes`` latency against the same call alone.
* a large roster (the hypivisor's caps: 10,000 nodes in all, 1,000 per connection): on a fresh hypivisor
  with the same dashboards, 10,000 agents register over 10 connections (pipelined, replies read as they
  come), then a new dashboard's time to hold the roster (``init`` holds at most 1 MiB, the rest follow as
  ``node_joined``), ``list_nodes`` over every page and paced join -> ``node_joined`` latency; the reference
  is the same procedure with 1,000 agents over one connection on another fresh hypivisor in the same
  repetition.

Every figure has a reference from the same repetition: the loaded join latencies against 20 joins on
the idle hypivisor (empty registry, same dashboards) measured first; ``list_nodes`` against the same call on
the empty registry; RSS growth against the idle process; steady-state CPU per delivered event against the
burst's. Hypivisor CPU is read from schedstat (ns). Rows give the median over the repetitions (the note
shows the range). The load generator is an
instrument and must cost far less than the hypivisor: dashboards do not parse JSON, they only pick
the event name, node id and session name out of the frame bytes and record (bytes, time) pairs;
everything else happens after the clock stops. Dashboards the hypivisor disconnected as too slow are
counted and named in the notes.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from bench.common import (
    Row,
    free_port,
    median,
    pair_ratios,
    pct,
    pin,
    pinned_self,
    raise_nofile,
    ratios_note,
    rss,
    run_tree_s,
    start_hypivisor,
    stop_process,
    wait_port,
)
from bench.wsmini import connect, connect_many

JOINED = b'{"event":"node_joined"'
UPDATED = b'{"event":"node_updated"'
ID = b'"id":"'
SESSION = b'"session_name":"'


class Rpc:
    """A ``/ws`` connection speaking JSON-RPC (agents and the probe)."""

    def __init__(self):
        self.waiters: dict = {}
        self.c = None
        self.n = 0

    def on_msg(self, op: int, payload: bytes) -> None:
        if payload.startswith((b'{"event"', b'{"id":null')):
            return  # the init every connection gets first; replies to fire-and-forget requests
        now = time.monotonic()
        msg = orjson.loads(payload)
        fut = self.waiters.pop(msg.get("id"), None)
        if fut is not None and not fut.done():
            fut.set_result((msg, now))

    def call_nowait(self, method: str, params: dict | None = None) -> asyncio.Future:
        self.n += 1
        rid = f"r{self.n}"
        fut = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        self.c.send(orjson.dumps({"id": rid, "method": method, "params": params or {}}))
        return fut

    def send_nowait(self, method: str, params: dict) -> None:
        """Fire and forget (heartbeats, paced joins): the reply is read and dropped."""
        self.n += 1
        self.c.send(orjson.dumps({"id": None, "method": method, "params": params}))

    async def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        msg, _ = await asyncio.wait_for(self.call_nowait(method, params), timeout)
        return msg


class Seen:
    """Arrivals at all dashboards as parallel lists (no per-event tuple for the garbage collector)."""

    def __init__(self) -> None:
        self.j_id: list[bytes] = []  # node_joined: node id, arrival
        self.j_t: list[float] = []
        self.u_id: list[bytes] = []  # node_updated: node id, session name, arrival
        self.u_s: list[bytes] = []
        self.u_t: list[float] = []


class Dashboard:
    """Records node_joined and node_updated arrivals into a shared :class:`Seen`.

    No JSON parsing on the hot path: the hypivisor serialises ``{"event":...,"node":{"id":...`` with the
    fields in model order, so slicing the bytes is enough (anything else falls back to orjson).
    """

    def __init__(self, seen: Seen):
        self.seen = seen
        self.c = None

    def on_msg(self, op: int, payload: bytes) -> None:
        seen = self.seen
        if payload.startswith(JOINED):
            i = payload.find(ID)
            if i > 0:
                i += 6
                seen.j_id.append(payload[i : payload.index(b'"', i)])
                seen.j_t.append(time.monotonic())
                return
        elif payload.startswith(UPDATED):
            i, s = payload.find(ID), payload.find(SESSION)
            if i > 0 and s > 0:
                i, s = i + 6, s + 16
                seen.u_id.append(payload[i : payload.index(b'"', i)])
                seen.u_s.append(payload[s : payload.index(b'"', s)])
                seen.u_t.append(time.monotonic())
                return
        else:
            return  # init, node_offline, node_removed
        msg = orjson.loads(payload)  # not in the expected shape: slow path
        node = msg.get("node") or {}
        now = time.monotonic()
        if msg.get("event") == "node_joined":
            seen.j_id.append(str(node.get("id")).encode())
            seen.j_t.append(now)
        else:
            seen.u_id.append(str(node.get("id")).encode())
            seen.u_s.append(str(node.get("session_name")).encode())
            seen.u_t.append(now)

    @property
    def dropped(self) -> bool:
        return self.c.transport is None or self.c.transport.is_closing()


async def attach(port: int, objs: list) -> list:
    conns = await connect_many(port, "/ws", len(objs), on_msg=lambda op, p: None)
    for o, c in zip(objs, conns, strict=True):
        o.c = c
        c.on_msg = o.on_msg
    return objs


FLOOR_JOINS = 20  # probe agents joining the idle hypivisor, one at a time (the latency floor)


def params(i: int) -> dict:
    return {
        "id": f"agent-{i:05d}",
        "machine": "bench",
        "cwd": f"/srv/p{i % 50}",
        "port": 20000 + i,
        "host": "127.0.0.1",
        "pid": 100000 + i,
        "activity": "idle",
    }


async def one_rep(smoke: bool, big: Path, n_dirs: int, home: Path, log) -> dict:
    n_agents, n_dash, n_join, join_rate = (50, 5, 20, 50.0) if smoke else (1000, 50, 100, 20.0)
    port = free_port()
    proc = start_hypivisor(port, home)
    r: dict = {"n_agents": n_agents, "n_dash": n_dash, "n_join": n_join, "join_rate": join_rate}
    conns: list = []
    gc.collect()
    gc.disable()  # no collector pauses in the instrument while it timestamps arrivals
    try:
        wait_port(port, proc=proc)
        pin(proc.pid, 1)
        # ---- dashboards
        seen = Seen()
        dashboards = await attach(port, [Dashboard(seen) for _ in range(n_dash)])
        await asyncio.sleep(0.2)  # their init frames
        rss0, cpu0 = rss(proc.pid), run_tree_s([proc.pid])
        r["rss0"] = rss0
        # ---- floors on the idle hypivisor (empty registry, same dashboards): what the loaded figures
        # below are compared with. Probe agents join one at a time, then leave again.
        probe = (await attach(port, [Rpc()]))[0]
        conns.append(probe)
        r["alone_empty"] = await list_nodes_ms(probe)
        probe.c.close()  # not a 51st dashboard during the burst
        probes = await attach(port, [Rpc() for _ in range(FLOOR_JOINS)])
        conns += probes
        sent: dict[bytes, float] = {}
        for j, a in enumerate(probes):
            pid = f"probe-{j:03d}"
            sent[pid.encode()] = time.monotonic()
            reply = await a.call("register", {**params(j), "id": pid, "port": 19_000 + j})
            assert "result" in reply, str(reply)[:200]
            await asyncio.sleep(1 / join_rate)
        await asyncio.sleep(0.2)
        floor = [1000 * (t - sent[nid]) for nid, t in zip(seen.j_id, seen.j_t, strict=True) if nid in sent]
        r["floor_p50"], r["floor_p99"] = pct(floor, 50), pct(floor, 99)
        for j, a in enumerate(probes):
            await a.call("deregister", {"id": f"probe-{j:03d}"})
            a.c.close()  # a connection without nodes would count as a dashboard from now on
        seen.j_id.clear()
        seen.j_t.clear()
        await asyncio.sleep(0.2)
        # ---- burst: every agent registers at once
        agents = await attach(port, [Rpc() for _ in range(n_agents)])
        conns += dashboards + agents
        await asyncio.sleep(0.2)
        cpu0, me0 = run_tree_s([proc.pid]), time.process_time()
        t0 = time.monotonic()
        done = []
        for k in range(0, n_agents, 100):  # waves of 100, as bridges reconnecting after a hypivisor restart
            futs = [a.call_nowait("register", params(k + i)) for i, a in enumerate(agents[k : k + 100])]
            done += await asyncio.wait_for(asyncio.gather(*futs), 120)
        r["t_replies"] = max(t for _, t in done) - t0
        assert all("result" in m for m, _ in done), [m for m, _ in done if "result" not in m][:3]
        deadline = time.monotonic() + 60
        while len(seen.j_t) < n_agents * sum(not d.dropped for d in dashboards) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        r["seen"] = len(seen.j_t)
        r["expected"] = n_agents * n_dash
        r["t_all"] = (max(seen.j_t) - t0) if seen.j_t else float("nan")
        r["cpu_burst"] = run_tree_s([proc.pid]) - cpu0
        r["bench_cpu_burst"] = time.process_time() - me0
        r["dropped_burst"] = sum(d.dropped for d in dashboards)
        log(
            f"  registry burst: {n_agents} registered in {r['t_replies']:.2f}s, all joins seen {r['t_all']:.2f}s "
            f"({r['seen']}/{r['expected']}); hypivisor CPU {r['cpu_burst']:.2f}s, "
            f"load generator CPU {r['bench_cpu_burst']:.2f}s; dashboards dropped {r['dropped_burst']}"
        )
        # ---- steady state: heartbeats (each changes session_name) + paced joins
        hb_interval = 2.0 if smoke else 10.0  # the bridge's heartbeat interval is TTL/3 = 10 s
        secs = 3.0 if smoke else 10.0
        loop = asyncio.get_running_loop()
        hb_sent: dict[tuple[bytes, bytes], float] = {}
        lags: list[float] = []

        async def loop_lag() -> None:
            """How late this process's own event loop runs (a stalled instrument inflates latencies)."""
            while True:
                t = loop.time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - t - 0.01)

        join_sent: dict[bytes, float] = {}
        extra = await attach(port, [Rpc() for _ in range(n_join)])
        conns += extra
        await asyncio.sleep(0.2)
        n_joined_burst, n_updated0 = len(seen.j_t), len(seen.u_t)
        c0, w0, me0 = run_tree_s([proc.pid]), time.monotonic(), time.process_time()
        lag = asyncio.get_running_loop().create_task(loop_lag())

        async def heartbeats() -> None:
            start = loop.time()
            total = int(n_agents * secs / hb_interval)
            for k in range(total):
                i = k % n_agents
                due = start + k * hb_interval / n_agents
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                name = f"session {k}"  # a changed field: every heartbeat is broadcast
                hb_sent[(f"agent-{i:05d}".encode(), name.encode())] = time.monotonic()
                agents[i].send_nowait("heartbeat", {"id": f"agent-{i:05d}", "session_name": name})

        async def joins() -> None:
            start = loop.time()
            for j, a in enumerate(extra):
                due = start + j / join_rate
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                p = params(n_agents + j)
                join_sent[p["id"].encode()] = time.monotonic()
                a.send_nowait("register", p)

        await asyncio.wait_for(asyncio.gather(heartbeats(), joins()), secs + 30)
        await asyncio.sleep(1.0)
        lag.cancel()
        r["lag_max"] = 1000 * max(lags, default=0.0)
        steady_secs = time.monotonic() - w0
        r["cpu_steady"] = run_tree_s([proc.pid]) - c0
        r["bench_cpu_steady"] = time.process_time() - me0
        r["steady_secs"] = steady_secs
        r["rss_growth"] = rss(proc.pid) - rss0
        r["rss"] = rss(proc.pid)
        join_lat = [
            1000 * (t - join_sent[nid])
            for nid, t in zip(seen.j_id[n_joined_burst:], seen.j_t[n_joined_burst:], strict=True)
            if nid in join_sent
        ]
        hb_lat = [
            1000 * (t - hb_sent[(nid, s)])
            for nid, s, t in zip(seen.u_id[n_updated0:], seen.u_s[n_updated0:], seen.u_t[n_updated0:], strict=True)
            if (nid, s) in hb_sent
        ]
        r["dropped"] = sum(d.dropped for d in dashboards)
        alive = n_dash - r["dropped"]
        r["join_expected"], r["join_got"] = len(join_sent) * n_dash, len(join_lat)
        r["hb_expected"], r["hb_got"] = len(hb_sent) * n_dash, len(hb_lat)
        r["join_p50"], r["join_p99"], r["hb_p99"] = pct(join_lat, 50), pct(join_lat, 99), pct(hb_lat, 99)
        r["hb_rate"] = len(hb_sent) / secs
        r["n_events"] = len(hb_sent) + len(join_sent)
        log(
            f"  registry steady: join p50 {r['join_p50']:.1f} ms p99 {r['join_p99']:.1f} ms, heartbeat p99 "
            f"{r['hb_p99']:.1f} ms, hypivisor CPU {r['cpu_steady']:.2f}s, load generator CPU "
            f"{r['bench_cpu_steady']:.2f}s in {steady_secs:.1f}s, its loop late by up to {r['lag_max']:.0f} ms; "
            f"{alive}/{n_dash} dashboards connected"
        )
        # ---- list_directories vs list_nodes on one connection
        probe = (await attach(port, [Rpc()]))[0]
        conns.append(probe)
        alone = await list_nodes_ms(probe)
        behind, order_ok, dir_ms = [], 0, []
        for _ in range(3 if smoke else 5):
            t = time.monotonic()
            f_dir = probe.call_nowait("list_directories", {"path": str(big)})
            f_nodes = probe.call_nowait("list_nodes")
            (m_nodes, t_nodes), (m_dir, t_dir) = await asyncio.wait_for(asyncio.gather(f_nodes, f_dir), 60)
            assert len(m_dir["result"]["directories"]) == n_dirs, str(m_dir)[:200]
            assert len(m_nodes["result"]["nodes"]) == n_agents + n_join, str(m_nodes)[:200]
            behind.append(1000 * (t_nodes - t))
            dir_ms.append(1000 * (t_dir - t))
            order_ok += t_nodes <= t_dir
        r.update(alone=alone, behind=median(behind), order_ok=order_ok, order_n=len(behind), dir_ms=median(dir_ms))
    finally:
        gc.enable()
        for o in conns:
            o.c.close()
        stop_process(proc)
    return r


TOTAL = b'"total":'
NEXT = b'"next_cursor":'
NODE = b'{"id":"'  # each node's JSON starts with its id (model field order)


def int_after(payload: bytes, key: bytes) -> int | None:
    """The integer right after the last ``key`` in ``payload`` (None if absent or null), without parsing JSON."""
    i = payload.rfind(key)
    if i < 0:
        return None
    i += len(key)
    end = i
    while end < len(payload) and payload[end] in b"0123456789":
        end += 1
    return int(payload[i:end]) if end > i else None


class NewDashboard:
    """A dashboard connecting to a full roster: done once ``init`` and the ``node_joined`` frames that follow
    it (``init.total`` says how many nodes in all) are in. Like the other dashboards it parses no JSON while
    the clock runs (it counts nodes by their opening bytes); the frames are parsed and checked afterwards."""

    def __init__(self, done: asyncio.Future):
        self.done = done
        self.total: int | None = None
        self.got = 0
        self.frames: list[bytes] = []
        self.c = None

    def on_msg(self, op: int, payload: bytes) -> None:
        if payload.startswith(b'{"event":"init"'):
            self.total = int_after(payload, TOTAL)
            self.got += payload.count(NODE)
        elif payload.startswith(JOINED):
            self.got += 1
        else:
            return
        self.frames.append(payload)
        if self.total is not None and self.got >= self.total and not self.done.done():
            self.done.set_result(time.monotonic())


async def new_dashboard_ms(port: int, n: int) -> tuple[float, int]:
    """Connect -> the whole roster held (init + every node_joined it announced), ms; and the frames it took."""
    done = asyncio.get_running_loop().create_future()
    d = NewDashboard(done)
    t0 = time.monotonic()
    d.c = await connect(port, "/ws", d.on_msg)
    try:
        t1 = await asyncio.wait_for(done, 60)
    finally:
        d.c.close()
    init = orjson.loads(d.frames[0])
    ids = {x["id"] for x in init["nodes"]} | {orjson.loads(f)["node"]["id"] for f in d.frames[1:]}
    assert init["event"] == "init" and init["total"] == n and len(ids) == n, (init["total"], len(ids), n)
    return 1000 * (t1 - t0), len(d.frames)


class Replies:
    """A ``/ws`` connection that hands back each reply's raw bytes and arrival time (no JSON on the clock)."""

    def __init__(self) -> None:
        self.fut: asyncio.Future | None = None
        self.c = None

    def on_msg(self, op: int, payload: bytes) -> None:
        if payload.startswith((b'{"event"', b'{"id":null')):
            return
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((payload, time.monotonic()))

    async def call(self, method: str, params: dict) -> tuple[bytes, float]:
        self.fut = asyncio.get_running_loop().create_future()
        self.c.send(orjson.dumps({"id": "q", "method": method, "params": params}))
        return await asyncio.wait_for(self.fut, 60)


async def list_all_ms(probe: Replies, n: int) -> tuple[float, int]:
    """``list_nodes`` page after page (``cursor``/``next_cursor``) until the end, ms; and the pages it took.
    The pages are parsed and their nodes counted after the clock stops."""
    pages: list[bytes] = []
    t, cursor = time.monotonic(), 0
    while True:
        payload, t_end = await probe.call("list_nodes", {"cursor": cursor} if cursor else {})
        pages.append(payload)
        cursor = int_after(payload, NEXT)
        if not cursor:
            break
    ms = 1000 * (t_end - t)
    got = [orjson.loads(x)["result"] for x in pages]
    assert sum(len(x["nodes"]) for x in got) == n, f"list_nodes gave {sum(len(x['nodes']) for x in got)} of {n}"
    assert all(x.get("next_cursor") for x in got[:-1]) and not got[-1].get("next_cursor"), "next_cursor"
    return ms, len(pages)


LARGE_BATCH = 100  # registrations in flight per connection: sent together, replies read before the next batch


async def large_rep(n_agents: int, n_conns: int, n_dash: int, n_join: int, join_rate: float, home: Path, log) -> dict:
    """One fresh hypivisor, ``n_dash`` dashboards: ``n_agents`` agents register over ``n_conns`` connections
    (a bridge host or a relay carrying many agents), pipelined in batches of ``LARGE_BATCH`` while the replies
    are read; then a new dashboard's time to hold the roster, ``list_nodes`` over all pages, and ``n_join``
    paced joins (an agent leaves, a new one joins on the same connection: the roster stays at ``n_agents``,
    which may be the hypivisor's cap) -> ``node_joined`` at every dashboard."""
    port = free_port()
    proc = start_hypivisor(port, home)
    r: dict = {"n_agents": n_agents, "n_conns": n_conns, "n_dash": n_dash}
    conns: list = []
    gc.collect()
    gc.disable()
    try:
        wait_port(port, proc=proc)
        pin(proc.pid, 1)
        seen = Seen()
        dashboards = await attach(port, [Dashboard(seen) for _ in range(n_dash)])
        conns += dashboards
        rpcs = await attach(port, [Rpc() for _ in range(n_conns)])
        conns += rpcs
        await asyncio.sleep(0.2)
        per_conn = n_agents // n_conns

        async def feed(c: int, rpc: Rpc) -> list:
            out = []
            base = c * per_conn
            for k in range(0, per_conn, LARGE_BATCH):
                futs = [rpc.call_nowait("register", params(base + i)) for i in range(k, min(per_conn, k + LARGE_BATCH))]
                out += await asyncio.gather(*futs)
            return out

        cpu0, t0 = run_tree_s([proc.pid]), time.monotonic()
        done = [
            m
            for part in await asyncio.wait_for(asyncio.gather(*(feed(c, x) for c, x in enumerate(rpcs))), 300)
            for m in part
        ]
        r["t_replies"] = max(t for _, t in done) - t0
        assert len(done) == n_agents and all("result" in m for m, _ in done), [m for m, _ in done if "result" not in m][
            :3
        ]
        deadline = time.monotonic() + 120
        while len(seen.j_t) < n_agents * sum(not d.dropped for d in dashboards) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        r["t_all"] = (max(seen.j_t) - t0) if seen.j_t else float("nan")
        r["cpu_burst"] = run_tree_s([proc.pid]) - cpu0
        r["seen"], r["expected"] = len(seen.j_t), n_agents * n_dash
        r["dropped_burst"] = sum(d.dropped for d in dashboards)
        await asyncio.sleep(0.5)
        # ---- a new dashboard holding the whole roster; list_nodes over every page (3 / 5 times, medians)
        got = [await new_dashboard_ms(port, n_agents) for _ in range(3)]
        r["new_dash"], r["new_dash_frames"] = median([ms for ms, _ in got]), got[0][1]
        probe = (await attach(port, [Replies()]))[0]
        conns.append(probe)
        await asyncio.sleep(0.5)  # the roster every new connection gets first
        lists = [await list_all_ms(probe, n_agents) for _ in range(5)]
        r["list_all"], r["list_pages"] = median([ms for ms, _ in lists]), lists[0][1]
        probe.c.close()  # not a dashboard during the joins
        await asyncio.sleep(0.2)
        # ---- paced joins with the full roster
        n_before = len(seen.j_t)
        join_sent: dict[bytes, float] = {}
        loop = asyncio.get_running_loop()
        start = loop.time()
        for j in range(n_join):
            due = start + j / join_rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            rpc = rpcs[j % n_conns]
            await rpc.call("deregister", {"id": params((j % n_conns) * per_conn + j // n_conns)["id"]})
            p = {**params(n_agents + j), "id": f"join-{j:05d}"}
            join_sent[p["id"].encode()] = time.monotonic()
            rpc.send_nowait("register", p)
        await asyncio.sleep(1.0)
        lat = [
            1000 * (t - join_sent[nid])
            for nid, t in zip(seen.j_id[n_before:], seen.j_t[n_before:], strict=True)
            if nid in join_sent
        ]
        r["dropped"] = sum(d.dropped for d in dashboards)
        r["join_expected"], r["join_got"] = n_join * (n_dash - r["dropped"]), len(lat)
        r["join_p50"], r["join_p99"] = pct(lat, 50), pct(lat, 99)
        r["rss"] = rss(proc.pid)
        log(
            f"  large roster {n_agents:,} agents over {n_conns} connections: registered in {r['t_replies']:.2f}s "
            f"({n_agents / r['t_replies']:,.0f}/s), all joins seen {r['t_all']:.2f}s ({r['seen']:,}/{r['expected']:,}), "
            f"hypivisor CPU {r['cpu_burst']:.2f}s; new dashboard {r['new_dash']:.0f} ms ({r['new_dash_frames']} frames); "
            f"list_nodes {r['list_all']:.1f} ms ({r['list_pages']} pages); join p99 {r['join_p99']:.1f} ms; "
            f"dashboards dropped {r['dropped']}"
        )
    finally:
        gc.enable()
        for o in conns:
            o.c.close()
        stop_process(proc)
    return r


async def list_nodes_ms(probe: Rpc, n: int = 5) -> float:
    """Median round trip of ``list_nodes`` on ``probe``, ms."""
    xs = []
    for _ in range(n):
        t = time.monotonic()
        await probe.call("list_nodes")
        xs.append(1000 * (time.monotonic() - t))
    return median(xs)


def spread(xs: list[float], fmt: str = "{:.1f}") -> str:
    xs = [x for x in xs if x == x]
    if len(xs) < 2:
        return ""
    return f"range {fmt.format(min(xs))}–{fmt.format(max(xs))}"


def joined_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


async def run(smoke: bool, log=print, reps: int | None = None) -> list[Row]:
    with pinned_self(0):  # the load generator on CPU0, the hypivisor on CPU1; later sections get both back
        return await _run(smoke, log, reps)


async def _run(smoke: bool, log=print, reps: int | None = None) -> list[Row]:
    """``reps`` repetitions on a fresh hypivisor each (default 3, smoke 1); rows give medians."""
    raise_nofile()
    reps = reps or (1 if smoke else 3)
    n_dirs = 200 if smoke else 10_000
    home = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    big = home / "big"
    big.mkdir()
    for i in range(n_dirs):
        (big / f"folder-{i:05d}").mkdir()
    # large roster: reference agents (one connection), agents, their connections, dashboards, joins, joins/s
    sizes = (20, 200, 2, 5, 10, 50.0) if smoke else (1000, 10_000, 10, 50, 100, 20.0)
    runs: list[dict] = []
    large: list[tuple[dict, dict]] = []
    try:
        for k in range(reps):
            if reps > 1:
                log(f"  registry repetition {k + 1}/{reps}")
            runs.append(await one_rep(smoke, big, n_dirs, home, log))
            # the same procedure at 1,000 agents (one connection) and at 10,000 (ten, the hypivisor's caps)
            ref = await large_rep(sizes[0], 1, sizes[3], sizes[4], sizes[5], home, log)
            big_r = await large_rep(sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], home, log)
            large.append((ref, big_r))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    first = runs[0]
    n_agents, n_dash, n_join, join_rate = first["n_agents"], first["n_dash"], first["n_join"], first["join_rate"]

    def med(key: str) -> float:
        return median([x[key] for x in runs])

    def col(key: str) -> list[float]:
        return [x[key] for x in runs]

    # Dashboards the hypivisor dropped (1008 too slow): said in the notes, never a silent gap.
    dropped_burst, dropped = sum(col("dropped_burst")), sum(col("dropped"))
    drop_note = (
        f"{dropped} of {n_dash * reps} dashboard connections disconnected as too slow "
        f"({dropped_burst} during the burst); percentiles over the rest"
        if dropped
        else ""
    )
    missing = sum(x["join_expected"] - x["join_got"] for x in runs)
    missing_note = f"{missing:,} node_joined not received" if missing else ""
    hb_missing = sum(x["hb_expected"] - x["hb_got"] for x in runs)
    seen, expected = sum(col("seen")), sum(col("expected"))
    cpu_per_burst = [1e6 * x["cpu_burst"] / max(1, x["seen"]) for x in runs]
    cpu_pct = [100 * x["cpu_steady"] / x["steady_secs"] for x in runs]
    cpu_per_steady = [1e6 * x["cpu_steady"] / max(1, x["n_events"] * (n_dash - x["dropped"])) for x in runs]
    gen_pct = [100 * x["bench_cpu_steady"] / x["steady_secs"] for x in runs]
    regs = [n_agents / x["t_replies"] for x in runs]
    p99 = med("join_p99")
    sec = "4 registry"
    rows = [
        Row(
            sec,
            f"register {n_agents} agents in waves of 100, {n_dash} dashboards: all replies",
            1000 * med("t_replies"),
            "ms",
            "every dashboard saw every join",
            1000 * med("t_all"),
            reps=reps,
            note=joined_notes(
                f"{median(regs):,.0f} registrations/s", spread([1000 * x for x in col("t_replies")], "{:,.0f}")
            ),
        ),
        Row(
            sec,
            "... until every dashboard saw every node_joined",
            1000 * med("t_all"),
            "ms",
            "all replies",
            1000 * med("t_replies"),
            reps=reps,
            note=joined_notes(
                f"{seen:,} of {expected:,} events",
                spread([1000 * x for x in col("t_all")], "{:,.0f}"),
                f"hypivisor CPU {1000 * med('cpu_burst'):.0f} ms = {median(cpu_per_burst):.1f} µs per delivered "
                f"event; load generator CPU {1000 * med('bench_cpu_burst'):.0f} ms",
                f"{dropped_burst} dashboards disconnected as too slow" if dropped_burst else "",
            ),
        ),
        Row(
            sec,
            f"join -> node_joined at {n_dash} dashboards, p50 ({join_rate:g} joins/s + heartbeats)",
            med("join_p50"),
            "ms",
            "idle hypivisor",
            med("floor_p50"),
            reps=reps,
            note=joined_notes(
                spread(col("join_p50")),
                missing_note,
                f"idle (empty registry, same dashboards, {FLOOR_JOINS} joins one at a time): "
                f"p50 {med('floor_p50'):.1f} ms, p99 {med('floor_p99'):.1f} ms",
            ),
        ),
        Row(
            sec,
            f"join -> node_joined at {n_dash} dashboards, p99",
            p99,
            "ms",
            target="<= 50 ms",
            met=(p99 <= 50) if p99 == p99 else False,
            reps=reps,
            note=joined_notes(
                spread(col("join_p99")),
                drop_note,
                f"load generator's loop late by up to {max(col('lag_max')):.0f} ms",
                "" if p99 == p99 else "no node_joined received: every dashboard was dropped",
            ),
        ),
        Row(
            sec,
            f"heartbeat -> node_updated p99 ({median(col('hb_rate')):,.0f} heartbeats/s)",
            med("hb_p99"),
            "ms",
            "idle join p99",
            med("floor_p99"),
            reps=reps,
            note=joined_notes(spread(col("hb_p99")), f"{hb_missing:,} node_updated not received" if hb_missing else ""),
        ),
        Row(
            sec,
            f"hypivisor CPU per delivered event, steady state ({n_agents} agents, {n_dash} dashboards)",
            median(cpu_per_steady),
            "µs",
            "burst",
            median(cpu_per_burst),
            reps=reps,
            note=joined_notes(
                f"{median(cpu_pct):.1f} % of a core",
                spread(cpu_pct),
                f"load generator {median(gen_pct):.0f} % of a core",
            ),
        ),
        Row(
            sec,
            f"hypivisor RSS growth with {n_agents + n_join} agents + {n_dash} dashboards",
            med("rss_growth") / 2**20,
            "MiB",
            "idle process RSS",
            med("rss0") / 2**20,
            reps=reps,
            note=f"RSS {med('rss') / 2**20:.0f} MiB; "
            f"{1024 * med('rss_growth') / 2**20 / (n_agents + n_join + n_dash):.1f} KiB per connection",
        ),
        Row(
            sec,
            f"list_nodes alone ({n_agents + n_join} nodes), median",
            med("alone"),
            "ms",
            "empty registry",
            med("alone_empty"),
            reps=reps,
            note=spread(col("alone"), "{:.2f}"),
        ),
        Row(
            sec,
            f"list_nodes sent right after list_directories ({n_dirs:,} entries), median",
            med("behind"),
            "ms",
            "list_nodes alone",
            med("alone"),
            "answered before list_directories",
            met=sum(col("order_ok")) == sum(col("order_n")),
            reps=reps,
            note=f"answered first {sum(col('order_ok'))}/{sum(col('order_n'))}; list_directories took "
            f"{med('dir_ms'):.0f} ms",
        ),
    ]
    return rows + large_rows(large)


def large_rows(large: list[tuple[dict, dict]]) -> list[Row]:
    """The large-roster rows: each figure at 10,000 agents against the same figure at 1,000 in the same
    repetition (the ratio shown is the median of the per-repetition ratios)."""
    sec = "4 registry"
    refs, bigs = [a for a, _ in large], [b for _, b in large]
    n_ref, n_big, n_conns, n_dash = refs[0]["n_agents"], bigs[0]["n_agents"], bigs[0]["n_conns"], bigs[0]["n_dash"]
    scale = n_big / n_ref
    reps = len(large)

    def figure(key: str, f=lambda x: x) -> tuple[float, float, list[float]]:
        vals, rvals = [f(b, key) for b in bigs], [f(a, key) for a in refs]
        return median(vals), median(rvals), pair_ratios(vals, rvals)

    def rate(x: dict, key: str) -> float:
        return x["n_agents"] / x[key]

    def plain(x: dict, key: str) -> float:
        return x[key]

    dropped = sum(x["dropped"] for x in refs + bigs)
    drop_note = f"{dropped} dashboard connections disconnected as too slow" if dropped else ""
    missing = sum(x["join_expected"] - x["join_got"] for x in refs + bigs)
    lim = 1.5 * scale
    regs, regs_ref, regs_r = figure("t_replies", rate)
    dash, dash_ref, dash_r = figure("new_dash", plain)
    lst, lst_ref, lst_r = figure("list_all", plain)
    p99, p99_ref, p99_r = figure("join_p99", plain)
    return [
        Row(
            sec,
            f"large roster: register {n_big:,} agents over {n_conns} connections, {n_dash} dashboards",
            regs,
            "reg/s",
            f"{n_ref:,} over 1",
            regs_ref,
            reps=reps,
            paired_ratio=median(regs_r),
            note=joined_notes(
                ratios_note("per-rep ratios", regs_r, 2),
                f"pipelined {LARGE_BATCH} per connection; every dashboard saw every join after "
                f"{median([x['t_all'] for x in bigs]):.1f} s ({sum(x['seen'] for x in bigs):,} of "
                f"{sum(x['expected'] for x in bigs):,} events; {n_ref:,}: {median([x['t_all'] for x in refs]):.2f} s)",
                drop_note,
            ),
        ),
        Row(
            sec,
            f"large roster: new dashboard holds all {n_big:,} nodes (connect -> init + node_joined)",
            dash,
            "ms",
            f"{n_ref:,} nodes",
            dash_ref,
            f"<= {lim:g}x {n_ref:,} (per node <= 1.5x)",
            met=median(dash_r) <= lim,
            reps=reps,
            paired_ratio=median(dash_r),
            note=joined_notes(
                ratios_note("per-rep ratios", dash_r, 2),
                f"{bigs[0]['new_dash_frames']:,} frame(s), init holding <= 1 MiB; {n_ref:,}: "
                f"{refs[0]['new_dash_frames']} frame(s); median of 3",
            ),
        ),
        Row(
            sec,
            f"large roster: list_nodes, every page, {n_big:,} nodes",
            lst,
            "ms",
            f"{n_ref:,} nodes",
            lst_ref,
            f"<= {lim:g}x {n_ref:,} (per node <= 1.5x)",
            met=median(lst_r) <= lim,
            reps=reps,
            paired_ratio=median(lst_r),
            note=joined_notes(
                ratios_note("per-rep ratios", lst_r, 2),
                f"{bigs[0]['list_pages']} page(s) of <= 4 MiB; median of 5",
            ),
        ),
        Row(
            sec,
            f"large roster: join -> node_joined at {n_dash} dashboards, p99, {n_big:,} on the roster",
            p99,
            "ms",
            f"{n_ref:,} on the roster",
            p99_ref,
            "<= 50 ms",
            met=p99 <= 50 if p99 == p99 else False,
            reps=reps,
            paired_ratio=median(p99_r),
            note=joined_notes(
                ratios_note("per-rep ratios", p99_r, 2),
                f"p50 {median([x['join_p50'] for x in bigs]):.1f} ms ({n_ref:,}: "
                f"{median([x['join_p50'] for x in refs]):.1f} ms); {bigs[0]['join_expected'] // max(1, n_dash):,} "
                f"joins at {n_dash} dashboards, each after an agent left (the roster keeps its size)",
                f"{missing:,} node_joined not received" if missing else "",
            ),
        ),
    ]
