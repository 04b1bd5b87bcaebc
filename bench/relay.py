"""Target 1: the hypivisor's ``/ws/agent/<id>`` proxy against nginx and a direct connection, same run.

``dialback`` is the same hypivisor proxy over a dialled-back link (specs/machines.md, "Links without inbound
ports"): a second hypivisor whose node is a toy agent registered with the ``dial_back`` capability and a port
nothing listens on, so every link is opened by the agent (``bench.toyagent --dialback``) and spliced as usual.

Topology (loopback): load client (this process, CPU0) -> relay (CPU1) -> toy agent (``bench.toyagent``,
CPU0). ``direct`` connects to the toy agent itself (the floor). The hypivisor is a real
``python -m hypivisor`` with the toy agent registered as a node over ``/ws``; nginx is Debian's, started
with its own temp prefix and config (1 worker, WebSocket proxy, 64k proxy buffers, no access log).
Each repetition starts the three variants afresh and runs every measurement on them back to back (the order
rotates between repetitions), so the hypivisor and nginx figures of one repetition are taken seconds apart
under the same machine load. Figures are medians over repetitions; a ratio is the median of the
per-repetition ratios (paired), which on this shared machine is far steadier than the ratio of two medians
taken minutes apart. Relay CPU is read from ``/proc/<pid>/task/*/schedstat`` (ns, not 10 ms ticks).
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

from bench.common import (
    REPO,
    Row,
    children,
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
    wait_port,
)
from bench.wsmini import connect, connect_many, ts_of, ts_payload

NODE = "bench-agent"
RELAYS = ("hypivisor", "dialback")  # the hypivisor's proxy: a direct link to the agent's port, and a dialled-back one
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONF = """worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /ws/agent/ {{
      proxy_pass http://127.0.0.1:{agent_port}/;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3600s;
      proxy_buffer_size 64k;
      proxy_buffers 8 64k;
      proxy_busy_buffers_size 128k;
    }}
  }}
}}
"""


class Target:
    """A started relay (or none): where to connect, which pids to charge CPU/RSS to, how to stop it."""

    def __init__(self, name: str, port: int, path: str, proc: subprocess.Popen | None, tmp: str | None = None):
        self.name, self.port, self.path, self.proc, self.tmp = name, port, path, proc, tmp
        self.reg = None  # the registration connection that keeps the hypivisor node active
        self.agent: subprocess.Popen | None = None  # dialback: the toy agent that registers and dials back

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        if self.name == "nginx":
            return children(self.proc.pid) or [self.proc.pid]  # the worker does the relaying
        return [self.proc.pid]

    def cpu(self) -> float:
        return run_tree_s(self.pids())

    def rss(self) -> int:
        return sum(rss(p) for p in self.pids())

    async def stop(self) -> None:
        if self.reg is not None:
            try:
                await asyncio.wait_for(self.reg.close(), 2)
            except Exception:  # noqa: BLE001 - teardown continues
                pass
        for proc in (self.agent, self.proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


async def start_target(name: str, agent_port: int) -> Target:
    if name == "direct":
        return Target(name, agent_port, "/", None)
    port = free_port()
    tmp = tempfile.mkdtemp(prefix=f"bench-{name}-")
    if name == "nginx":
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, agent_port=agent_port))
        proc = subprocess.Popen(
            [NGINX, "-p", tmp, "-e", f"{tmp}/error.log", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = Target(name, port, f"/ws/agent/{NODE}", proc, tmp)
        try:
            wait_port(port, proc=proc)
        except Exception:
            await target.stop()
            raise
        for pid in target.pids():
            pin(pid, 1)
        return target
    if name == "hypivisor":
        proc = start_hypivisor(port, Path(tmp))
        target = Target(name, port, f"/ws/agent/{NODE}", proc, tmp)
        try:
            wait_port(port, proc=proc)
            pin(proc.pid, 1)
            import websockets

            target.reg = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)
            await target.reg.send(
                json.dumps(
                    {
                        "id": 1,
                        "method": "register",
                        "params": {"id": NODE, "machine": "bench", "cwd": tmp, "port": agent_port, "host": "127.0.0.1"},
                    }
                )
            )
            while True:
                msg = json.loads(await asyncio.wait_for(target.reg.recv(), 10))
                if msg.get("id") == 1:
                    assert "result" in msg, msg
                    break
        except Exception:
            await target.stop()
            raise
        return target
    if name == "dialback":
        proc = start_hypivisor(port, Path(tmp))
        target = Target(name, port, f"/ws/agent/{NODE}", proc, tmp)
        try:
            wait_port(port, proc=proc)
            pin(proc.pid, 1)
            own_port = free_port()
            target.agent = subprocess.Popen(
                [sys.executable, "-m", "bench.toyagent", "--port", str(own_port), "--node", NODE,
                 "--dialback", f"ws://127.0.0.1:{port}/ws", "--advertise", str(free_port())],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
            wait_port(own_port, proc=target.agent)
            pin(target.agent.pid, 0)
            await wait_registered(port)
        except Exception:
            await target.stop()
            raise
        return target
    raise ValueError(name)


async def wait_registered(port: int, timeout: float = 10.0) -> None:
    """Until the dial-back agent is on the hypivisor's roster (it registers from its own process)."""
    import websockets

    deadline = time.monotonic() + timeout
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
        while time.monotonic() < deadline:
            await ws.send(json.dumps({"id": "n", "method": "list_nodes", "params": {}}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg.get("id") == "n":
                    break
            if any(n["id"] == NODE and n["status"] == "active" for n in msg["result"]["nodes"]):
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("the dial-back toy agent did not register")


class RelayBench:
    def __init__(self, smoke: bool):
        self.smoke = smoke
        self.warm = 0.2 if smoke else 0.5
        self.window = 0.5 if smoke else 2.0
        self.idle_n = 100 if smoke else 1000
        self.streams, self.rate = (40, 50.0) if smoke else (40, 250.0)  # 40 x 250 = 10,000 msg/s
        self.stream_secs = 1.5 if smoke else 5.0
        self.rtt_rate, self.rtt_secs = 1000.0, (0.5 if smoke else 2.0)

    async def window_of(self, t: Target, counter) -> tuple[float, float, float]:
        await asyncio.sleep(self.warm)
        c0, r0, t0 = counter(), t.cpu(), time.monotonic()
        await asyncio.sleep(self.window)
        return counter() - c0, t.cpu() - r0, time.monotonic() - t0

    async def throughput(self, t: Target, size: int) -> dict:
        c = await connect(t.port, t.path)
        try:
            c.send(b"!blast %d %g" % (size, self.warm + self.window + 1))
            nbytes, cpu, secs = await self.window_of(t, lambda: c.nbytes)
        finally:
            c.close()
        frame_len = size + (2 if size < 126 else 4 if size < 65536 else 10)
        msgs = nbytes / frame_len
        await asyncio.sleep(0.3)
        return {
            "msg_s": msgs / secs,
            "MB_s": msgs * size / secs / 1e6,
            "cpu_us_msg": 1e6 * cpu / msgs if msgs and t.proc else None,
        }

    async def streams_cpu(self, t: Target) -> dict:
        conns = await connect_many(t.port, t.path, self.streams)
        count = int(self.rate * self.stream_secs)
        frame_len = 202
        try:
            for c in conns:
                c.send(b"!pace 200 %d %g" % (count, self.rate))
            await asyncio.sleep(min(1.0, self.stream_secs / 4))
            n0, r0, t0 = sum(c.nbytes for c in conns), t.cpu(), time.monotonic()
            await asyncio.sleep(self.stream_secs / 2)
            n1, r1, t1 = sum(c.nbytes for c in conns), t.cpu(), time.monotonic()
        finally:
            for c in conns:
                c.close()
        msgs = (n1 - n0) / frame_len
        await asyncio.sleep(0.3)
        return {
            "msg_s": msgs / (t1 - t0),
            "cpu_us_msg": 1e6 * (r1 - r0) / msgs if msgs and t.proc else None,
            "cpu_pct": 100 * (r1 - r0) / (t1 - t0),
        }

    async def rtt(self, t: Target) -> dict:
        rtts: list[int] = []
        c = await connect(t.port, t.path, on_msg=lambda op, p: rtts.append(time.monotonic_ns() - ts_of(p)))
        total = int(self.rtt_rate * self.rtt_secs)
        loop = asyncio.get_running_loop()
        try:
            t0 = loop.time()
            for i in range(total):
                delay = t0 + i / self.rtt_rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                c.send(ts_payload(200, i))
            deadline = time.monotonic() + 2
            while len(rtts) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            c.close()
        xs = [x / 1000 for x in rtts[len(rtts) // 10 :]]
        return {"p50_us": pct(xs, 50), "p99_us": pct(xs, 99), "lost": total - len(rtts)}

    async def idle(self, t: Target) -> dict:
        for c in await connect_many(t.port, t.path, 20):  # warm allocator and code paths
            c.close()
        await asyncio.sleep(0.5)
        r0 = t.rss()
        conns = await connect_many(t.port, t.path, self.idle_n)
        await asyncio.sleep(1.0)
        r1 = t.rss()
        for c in conns:
            c.close()
        await asyncio.sleep(0.5)
        return {"kb_conn": (r1 - r0) / self.idle_n / 1024 if t.proc else None}


async def run(smoke: bool, reps: int, log=print) -> list[Row]:
    with pinned_self(0):  # the load client on CPU0, the relays on CPU1; later sections get both cores back
        return await _run(smoke, reps, log)


async def _run(smoke: bool, reps: int, log=print) -> list[Row]:
    raise_nofile()
    b = RelayBench(smoke)
    agent_port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "bench.toyagent", "--port", str(agent_port)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    names = ["direct", "nginx", "hypivisor", "dialback"]
    per_rep: list[dict[tuple[str, str], float]] = []
    measures = (
        ("small", lambda t: b.throughput(t, 200)),
        ("streams", b.streams_cpu),
        ("big", lambda t: b.throughput(t, 65536)),
        ("rtt", b.rtt),
        ("idle", b.idle),
    )
    try:
        wait_port(agent_port, proc=agent)
        pin(agent.pid, 0)
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            targets: dict[str, Target] = {}
            got: dict[tuple[str, str], float] = {}
            per_rep.append(got)
            try:
                for name in order:
                    targets[name] = await start_target(name, agent_port)
                await asyncio.sleep(0.5)
                for key, measure in measures:
                    for name in order:
                        m = await asyncio.wait_for(measure(targets[name]), 60)
                        for k, v in m.items():
                            if v is not None:
                                got[(name, f"{key}.{k}")] = v
                    log(
                        f"  relay rep{rep} {key}: "
                        + json.dumps({f"{n}.{k}": round(v, 3) for (n, k), v in got.items() if k.startswith(key + ".")})
                    )
            finally:
                for t in targets.values():
                    await t.stop()
    finally:
        agent.terminate()
        try:
            agent.wait(5)
        except subprocess.TimeoutExpired:
            agent.kill()

    def ratios(name: str, key: str) -> list[float]:
        """name/nginx for ``key`` in each repetition (both figures from the same repetition)."""
        return pair_ratios([g.get((name, key)) for g in per_rep], [g.get(("nginx", key)) for g in per_rep])

    def paired(name: str, key: str) -> float | None:
        xs = ratios(name, key)
        return median(xs) if xs else None

    def m(name: str, key: str) -> float | None:
        xs = [g[(name, key)] for g in per_rep if (name, key) in g]
        return median(xs) if xs else None

    def spread(name: str, key: str) -> str:
        return ratios_note("per-rep ratios", ratios(name, key), min_count=2) if name != "nginx" else ""

    rows: list[Row] = []
    sec = "1 proxy"
    for name in names:
        rows.append(
            Row(
                sec,
                f"200 B frames pipelined, {name}",
                m(name, "small.msg_s"),
                "msg/s",
                "nginx",
                m("nginx", "small.msg_s"),
                ">= 0.9x nginx" if name in RELAYS else "",
                reps=reps,
                paired_ratio=paired(name, "small.msg_s"),
                note=spread(name, "small.msg_s"),
            )
        )
    for name in ("nginx", *RELAYS):
        rows.append(
            Row(
                sec,
                f"relay CPU per msg, 40 streams x {b.rate:g} msg/s, {name}",
                m(name, "streams.cpu_us_msg"),
                "µs/msg",
                "nginx",
                m("nginx", "streams.cpu_us_msg"),
                "<= 1.1x nginx" if name in RELAYS else "",
                reps=reps,
                paired_ratio=paired(name, "streams.cpu_us_msg"),
                note="; ".join(
                    x
                    for x in (
                        spread(name, "streams.cpu_us_msg"),
                        f"delivered {fmt_rate(m(name, 'streams.msg_s'))} msg/s, relay {m(name, 'streams.cpu_pct') or 0:.0f}% of a core",
                    )
                    if x
                ),
            )
        )
    for name in names:
        rows.append(
            Row(
                sec,
                f"64 KiB frames, {name}",
                m(name, "big.MB_s"),
                "MB/s",
                "nginx",
                m("nginx", "big.MB_s"),
                ">= 0.9x nginx" if name in RELAYS else "",
                reps=reps,
                paired_ratio=paired(name, "big.MB_s"),
                note=spread(name, "big.MB_s"),
            )
        )
    for name in names:
        rows.append(
            Row(
                sec,
                f"RTT p50 at 1,000 msg/s, {name}",
                m(name, "rtt.p50_us"),
                "µs",
                "nginx",
                m("nginx", "rtt.p50_us"),
                reps=reps,
                paired_ratio=paired(name, "rtt.p50_us"),
            )
        )
        rows.append(
            Row(
                sec,
                f"RTT p99 at 1,000 msg/s, {name}",
                m(name, "rtt.p99_us"),
                "µs",
                "nginx",
                m("nginx", "rtt.p99_us"),
                reps=reps,
                paired_ratio=paired(name, "rtt.p99_us"),
            )
        )
    for name in ("nginx", *RELAYS):
        rows.append(
            Row(
                sec,
                f"memory per idle proxied connection ({b.idle_n}), {name}",
                m(name, "idle.kb_conn"),
                "KB",
                "nginx",
                m("nginx", "idle.kb_conn"),
                "<= 5 KB" if name in RELAYS else "",
                reps=reps,
                paired_ratio=paired(name, "idle.kb_conn"),
            )
        )
    for r in rows:
        if r.target and r.value is not None:
            if r.target.startswith(">= 0.9x"):
                r.met = r.ratio is not None and r.ratio >= 0.9
            elif r.target.startswith("<= 1.1x"):
                r.met = r.ratio is not None and r.ratio <= 1.1
            elif r.target == "<= 5 KB":
                r.met = r.value <= 5
    return rows


def fmt_rate(x) -> str:
    return "–" if x is None else f"{x:,.0f}"
