"""The fail-over's moving agent connections, in a process of their own (``bench/cluster.py``, ``failover``).

Bridges and browsers are different programs on different machines. In the load generator's one Python loop the 17
dashboards that reconnect at the kill each read a 10,000-node roster (~8,600 frames), and the agents' reconnections
and registrations waited behind that parsing: the fail-over measured the load generator. This process holds only
the connections that move. It reads one JSON line on stdin (the hypivisor ports, and per connection its index, its
hypivisor order and its agents' register params), answers ``{"ready": true}``, and on the line ``go`` (the bench saw
the kill) moves every connection to the next hypivisor of its list and registers its agents again, as
``AgentConn.register_all`` does. It prints one JSON line per connection (``index``, ``reconnected_at``,
``reregistered_at``: ``time.monotonic()``, the same clock in every process here; ``errors``), then
``{"done": true, "cpu": ...}``, keeps the connections alive (each connection's first agent heartbeats every
``KEEPALIVE_S``) and exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from bench.cluster import KEEPALIVE_S, AgentConn


async def move(conn: AgentConn, ports: list[int]) -> dict:
    errors: list[str] = []
    for nxt in conn.order[1:]:  # the next at once, as a bridge's list fail-over does
        try:
            conn.at = nxt
            conn.waiters.clear()
            await conn.connect(ports)
            conn.reconnected_at = time.monotonic()
            await conn.register_all(60)
            conn.reregistered_at = time.monotonic()
            break
        except Exception as exc:  # noqa: BLE001 - try the next one, say why if none took it
            errors.append(f"connection {conn.index} -> hypivisor {nxt}: {exc!r}"[:200])
    return {"index": conn.index, "reconnected_at": conn.reconnected_at, "reregistered_at": conn.reregistered_at,
            "errors": errors}  # fmt: skip


async def keep_alive(conns: list[AgentConn]) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_S)
        for conn in conns:
            c = conn.c
            if c is not None and c.transport is not None and not c.transport.is_closing() and conn.agents:
                conn.send_nowait("heartbeat", {"id": conn.agents[0]["id"]})


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    setup = orjson.loads(await reader.readline())
    ports = setup["ports"]
    conns = [AgentConn(c["index"], c["agents"], c["order"]) for c in setup["conns"]]

    def say(obj: dict) -> None:
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")
        sys.stdout.flush()

    say({"ready": True})
    if (await reader.readline()).strip() != b"go":
        return
    cpu0 = time.process_time()
    for done in asyncio.as_completed([move(c, ports) for c in conns]):
        say(await done)
    say({"done": True, "cpu": time.process_time() - cpu0})
    alive = loop.create_task(keep_alive(conns))
    await reader.read()  # until stdin closes
    alive.cancel()
    for conn in conns:
        if conn.c is not None:
            conn.c.shutdown()


if __name__ == "__main__":
    try:
        import uvloop  # the load generator's loop, as in bench/run.py when installed
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main())
