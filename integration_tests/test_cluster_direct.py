"""``hypivisor.cluster.direct`` against a real ``nats-server``: a subscription's messages reach a plain handler
in order, in the client's read step (no task per subscription), a handler that raises loses nothing after it,
nothing counts as pending (no slow-consumer error however much passes), and unsubscribing stops it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from types import SimpleNamespace
from typing import Any

import nats
import pytest

from hypivisor.cluster.direct import subscribe_direct
from hypivisor.cluster.nats_backplane import settled


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


async def test_a_quiet_ordered_consumer_answers_flow_control_and_does_not_poll(nats_cluster: Any) -> None:
    """``quiet_ordered_consumer``: a backlog past the server's flow-control window reaches a slow callback in full
    and in order; a flow-control reply scheduled to wait for the callback is sent by the replacement task; an idle
    consumer's tasks wait for a flow-control message or the wall-clock tick, not on nats-py's 0.25 s poll."""
    from nats.js.api import DeliverPolicy

    from hypivisor.cluster.direct import quiet_ordered_consumer

    nc = await nats.connect(servers=nats_cluster.urls[:1], connect_timeout=5, allow_reconnect=False)
    js = nc.jetstream()
    stream = f"FCTEST{time.monotonic_ns()}"
    try:
        # the shared cluster may still be settling after an earlier test killed and restarted its nodes (its meta
        # layer or the new stream electing a leader): each call is tried again as a hypivisor's start does, and the
        # message id makes a retried publish of a message the stream took once a duplicate it drops
        stream_made = partial(js.add_stream, name=stream, subjects=[f"{stream}.>"])
        await settled(stream_made, "add_stream", time.monotonic() + 30)
        n, body = 1_500, b"y" * 20_000  # 30 MB: several flow-control windows
        for i in range(n):
            put = partial(js.publish, f"{stream}.k{i % 7}", str(i).encode() + b":" + body, timeout=5,
                          headers={"Nats-Msg-Id": str(i)})  # fmt: skip
            await settled(put, "publish", time.monotonic() + 30)
        got: list[int] = []

        async def on_msg(msg: Any) -> None:
            got.append(int(msg.data.split(b":", 1)[0]))
            await asyncio.sleep(0.001)  # a slow callback

        sub = await js.subscribe(f"{stream}.>", stream=stream, cb=on_msg, ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.ALL, idle_heartbeat=1.0)  # fmt: skip
        jsi = sub._sub._jsi
        original_fc, original_hb = jsi._fctask, jsi._hbtask
        quiet_ordered_consumer(sub)
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert got == list(range(n)), f"{len(got)} of {n} delivered"
        assert original_fc.cancelled() and original_hb.cancelled()
        # idle: both tasks wait (an event, a wall-clock sleep of 2 heartbeats), neither is nats-py's poll
        await asyncio.sleep(0.6)
        for task in (jsi._fctask, jsi._hbtask):
            assert not task.done()
            assert task.get_coro().__qualname__ in ("_answer_flow_control", "_check_activity")
        # a reply scheduled behind messages the callback has not had yet goes once they are handed on
        replies: list[str] = []

        async def on_reply(msg: Any) -> None:
            replies.append(msg.subject)

        probe = await nc.subscribe(f"{stream}.fc.reply", cb=on_reply)
        queued = [1]  # a message before the flow-control message still queued for the callback: the reply waits
        real_queue, jsi._psub._pending_queue = jsi._psub._pending_queue, SimpleNamespace(qsize=lambda: queued[0])
        jsi.schedule_flow_control_response(f"{stream}.fc.reply")
        await asyncio.sleep(0.2)
        await nc.flush(timeout=5)
        assert replies == [] and jsi._fcr is not None
        queued[0] = 0  # handed on
        deadline = time.monotonic() + 5
        while not replies and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert replies == [f"{stream}.fc.reply"] and jsi._fcr is None
        jsi._psub._pending_queue = real_queue
        await probe.unsubscribe()
        await sub.unsubscribe()
        await asyncio.sleep(0)
        assert jsi._fctask.done() and jsi._hbtask.done()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
