"""``hypivisor.cluster.direct`` against a real ``nats-server``: a subscription's messages reach a plain handler
in order, in the client's read step (no task per subscription), a handler that raises loses nothing after it,
nothing counts as pending (no slow-consumer error however much passes), and unsubscribing stops it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from hypivisor.cluster.direct import subscribe_direct


async def test_a_direct_subscription_hands_every_message_to_its_handler_in_order(nats_cluster: Any) -> None:
    nc = await nats.connect(servers=nats_cluster.urls[:1], connect_timeout=5, allow_reconnect=False)
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc._error_cb = on_error  # a slow-consumer error would come here
    got: list[bytes] = []
    tasks: list[asyncio.Task[Any] | None] = []

    def handler(msg: Any) -> None:
        tasks.append(asyncio.current_task())
        if msg.data == b"boom":
            raise RuntimeError("a handler that fails")
        got.append(msg.data)

    try:
        sub = await subscribe_direct(nc, "direct.test", handler)
        assert sub._wait_for_msgs_task is None  # no task of its own
        big = b"x" * 60_000
        n = 1_200  # 72 MB in all: past nats-py's default 64 MiB pending limit had anything stayed pending
        for i in range(n):
            await nc.publish("direct.test", big if i % 2 else str(i).encode())
            if i == 5:
                await nc.publish("direct.test", b"boom")
            if i % 100 == 0:
                await nc.flush(timeout=5)
        await nc.flush(timeout=5)
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(got) == n, f"{len(got)} of {n} delivered"
        assert [g for g in got if g != big] == [str(i).encode() for i in range(0, n, 2)]
        assert sub._pending_size == 0 and sub.pending_msgs == 0
        assert not errors, errors
        # the read loop's own task calls it: one task for the whole connection, none per subscription
        assert len({id(t) for t in tasks}) == 1 and tasks[0] is nc._reading_task
        await sub.unsubscribe()
        await nc.publish("direct.test", b"after")
        await nc.flush(timeout=5)
        await asyncio.sleep(0.2)
        assert got[-1] != b"after" and len(got) == n
    finally:
        await nc.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
