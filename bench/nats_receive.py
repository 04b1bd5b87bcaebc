"""What one received roster change costs a hypivisor in the NATS client (specs/cluster.md §13): a diagnosis aid,
not a section of ``make bench``. ``python -m bench.nats_receive``: starts the pinned ``nats-server`` (one node,
JetStream), then for each way of receiving (a core subscription, the JetStream ordered consumer a KV watch uses,
the whole ``NatsBackplane`` watch) a child process receives 3,000 record puts published at 300/s, and prints its
own CPU per message."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

N = 3000
RATE = 300.0
SITE = "nrx"
RECORD = json.dumps({
    "id": "x" * 20, "machine": "m1", "cwd": "/srv/project/foo", "port": 40001, "status": "active",
    "session_name": "s", "activity": "idle", "hv": "hv-b", "last_seen": 1.0, "capabilities": ["a", "b", "c"],
    "pi_version": "1.6.0", "model": "fake", "title": "t" * 40, "tags": [], "unread": 0,
}).encode()  # fmt: skip
MODES = ("raw", "core", "ordered", "backplane")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def receive(mode: str, url: str) -> None:
    import nats
    from nats.js.api import DeliverPolicy

    from hypivisor.cluster.names import AGENTS_BUCKET
    from hypivisor.cluster.nats_backplane import NatsBackplane, NatsSettings

    got = 0
    done = asyncio.Event()

    def count() -> None:
        nonlocal got
        got += 1
        if got >= N:
            done.set()

    bucket = AGENTS_BUCKET.format(site=SITE)
    if mode == "raw":  # the floor: a bare asyncio protocol speaking NATS, no client library
        host, port = url.removeprefix("nats://").rsplit(":", 1)

        class Raw(asyncio.Protocol):
            buf = b""

            def connection_made(self, transport) -> None:
                transport.write(
                    b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
                    + f"SUB $KV.{bucket}.> 1\r\nPING\r\n".encode()
                )
                self.t = transport

            def data_received(self, data: bytes) -> None:
                buf = self.buf + data
                while True:
                    end = buf.find(b"\r\n")
                    if end < 0:
                        break
                    line = buf[:end]
                    if line.startswith(b"MSG "):
                        size = int(line.rsplit(b" ", 1)[1])
                        if len(buf) < end + 2 + size + 2:
                            break
                        payload = buf[end + 2 : end + 2 + size]  # noqa: F841
                        buf = buf[end + 4 + size :]
                        count()
                        continue
                    if line == b"PING":
                        self.t.write(b"PONG\r\n")
                    buf = buf[end + 2 :]
                self.buf = buf

        await asyncio.get_running_loop().create_connection(Raw, host, int(port))
    elif mode == "backplane":
        bp = NatsBackplane(NatsSettings("hv-a", SITE, liveness="lease", ttl_s=60, heartbeat_s=20, servers=(url,)))
        await bp.start()
        bp.on_agent_change(lambda change: count())
    else:
        nc = await nats.connect(url)

        async def cb(msg) -> None:
            if mode == "ordered":
                msg.metadata  # noqa: B018 - what a watch reads of every message
            count()

        if mode == "core":
            await nc.subscribe(f"$KV.{bucket}.>", cb=cb)
        else:
            await nc.jetstream().subscribe(f"$KV.{bucket}.>", stream=f"KV_{bucket}", cb=cb, ordered_consumer=True,
                                           deliver_policy=DeliverPolicy.NEW, idle_heartbeat=1.0)  # fmt: skip
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    c0 = cpu_s()
    await asyncio.wait_for(done.wait(), 60)
    print(f"{mode}: {got} messages, {(cpu_s() - c0) / got * 1e6:.1f} µs of CPU each", flush=True)


async def publish(mode: str, url: str) -> str:
    import nats

    from hypivisor.cluster.names import AGENTS_BUCKET

    child = subprocess.Popen([sys.executable, "-m", "bench.nats_receive", "--receive", mode, url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None and child.stdin is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        if line.strip() != "ready":
            raise RuntimeError(f"receiver {mode}: {line!r}")
        nc = await nats.connect(url)
        await asyncio.sleep(0.5)
        child.stdin.write("go\n")
        child.stdin.flush()
        bucket = AGENTS_BUCKET.format(site=SITE)
        t0 = time.monotonic()
        for k in range(N):
            due = t0 + k / RATE
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            await nc.publish(f"$KV.{bucket}.m{k % 50}.a{k % 1000}", RECORD)
        await nc.flush()
        result = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        await nc.close()
        return result.strip()
    finally:
        child.kill()
        child.wait(10)


def main() -> None:
    if sys.argv[1:2] == ["--receive"]:
        from hypivisor.__main__ import _loop_factory

        with asyncio.Runner(loop_factory=_loop_factory()) as runner:  # the hypivisor's loop (uvloop)
            runner.run(receive(sys.argv[2], sys.argv[3]))
        return
    from hypivisor.cluster.nats_backplane import NatsBackplane, NatsSettings
    from integration_tests.harness.hypivisor_proc import free_port
    from integration_tests.harness.nats import nats_server_binary

    store = tempfile.mkdtemp(prefix="nats-receive-")
    port = free_port()
    server = subprocess.Popen([str(nats_server_binary()), "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)],
                              stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"nats://127.0.0.1:{port}"
    try:
        time.sleep(1.0)

        async def make_bucket() -> None:  # the roster bucket, made as a hypivisor makes it
            bp = NatsBackplane(NatsSettings("hv-z", SITE, liveness="lease", ttl_s=60, heartbeat_s=20, servers=(url,)))
            await bp.start()
            await bp.close()

        asyncio.run(make_bucket())
        for mode in sys.argv[1:] or MODES:
            print(asyncio.run(publish(mode, url)), flush=True)
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
