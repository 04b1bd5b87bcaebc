"""Core NATS subscriptions whose messages are handled at once, in the read loop's step.

``nats-py`` hands each message of a subscription with a callback to a task of its own through an
``asyncio.Queue``: a queue put, a task wake-up, a queue get and a ``task_done`` per message. The roster's
feed and the puts' acks (specs/cluster.md §3) are the cluster's busiest subscriptions, and their handlers are
short and never wait, so they are called directly instead: the subscription's pending queue is replaced by one
that calls the handler in ``put_nowait``. A handler that raises is logged; the subscription goes on.

This relies on how the pinned ``nats-py`` (2.16) delivers a message to a subscription without a callback:
``Client._process_msg`` adds the message's size to ``_pending_size`` and calls ``_pending_queue.put_nowait``.
``integration_tests/test_cluster_direct.py`` checks it against a real ``nats-server``.

:func:`quiet_ordered_consumer` does the same kind of thing for an ordered push consumer (a KV watch). ``nats-py``
runs two periodic tasks per consumer for its whole life, even when nothing flows: one answers the server's
flow-control messages and wakes every 0.25 s, one checks every two idle heartbeats that a message or heartbeat came.
A hypivisor keeps several (leases, approvals, push devices, the inbox), and an idle one woke 227 times in 10 s
(``perf stat``), 119 without these timers: each wake-up a context switch on a busy machine. The flow-control task
is replaced by one that sleeps until a flow-control message is scheduled (``_JSI.schedule_flow_control_response``,
the only place that sets ``_fcr``) and answers it, as the original does, once the messages before it were handed to
the callback; the activity check by the same check on the wall clock's multiples of its period, so every consumer's
check is one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from hypivisor.cluster.feed import gather_delay

log = structlog.get_logger(part="cluster")


class DirectQueue(asyncio.Queue):
    """A pending queue that is always empty: each message goes to ``handler`` as it is put."""

    def __init__(self, sub: Any, handler: Callable[[Any], None]) -> None:
        super().__init__()
        self._sub = sub
        self._handler = handler

    def put_nowait(self, item: Any) -> None:
        self._sub._pending_size -= len(item.data)  # nothing is left pending
        try:
            self._handler(item)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the subscription
            log.error("cluster_handler_failed", subject=str(item.subject)[:200], error=f"{type(exc).__name__}: {exc}")


async def subscribe_direct(nc: Any, subject: str, handler: Callable[[Any], None]) -> Any:
    """Subscribe ``subject`` on client ``nc`` with a plain (not async) ``handler`` called per message; the
    subscription (``unsubscribe()`` as usual)."""
    sub = await nc.subscribe(subject)
    sub._pending_queue = DirectQueue(sub, handler)
    return sub


# While a flow-control reply waits for the messages before it to reach the callback: how often that is checked.
FC_POLL_S = 0.01


def quiet_ordered_consumer(psub: Any) -> None:
    """An ordered push consumer's flow-control replies from a task that waits for a flow-control message, not one
    that polls every 0.25 s, and its activity check on wall-clock ticks (see the module's docstring). The
    subscription's ``unsubscribe`` cancels both as before."""
    jsi = psub._sub._jsi
    if jsi is None:
        return
    loop = asyncio.get_running_loop()
    if jsi._fctask is not None:
        jsi._fctask.cancel()
        wake = asyncio.Event()
        schedule = jsi.schedule_flow_control_response

        def scheduled(reply: str) -> None:
            schedule(reply)
            wake.set()

        jsi.schedule_flow_control_response = scheduled
        jsi._fctask = loop.create_task(_answer_flow_control(jsi, wake))
    if jsi._hbtask is not None and jsi._hbi:
        jsi._hbtask.cancel()
        jsi._hbtask = loop.create_task(_check_activity(jsi))


async def _check_activity(jsi: Any) -> None:
    """``_JSI.activity_check`` on the wall clock's multiples of two idle heartbeats: a consumer that got neither a
    message nor a heartbeat over a whole period is recreated from the next stream sequence (the server holding it
    died). The first period may be shorter, and it starts active, as the original does."""
    while not jsi._conn.is_closed:
        await asyncio.sleep(gather_delay(time.time(), 2 * jsi._hbi))
        active, jsi._active = jsi._active, False
        if not active and jsi._ordered:
            try:
                await jsi.reset_ordered_consumer(jsi._sseq + 1)
            except Exception as exc:  # noqa: BLE001 - the next period tries again (the original's task just ended)
                log.warning("cluster_consumer_reset_failed", error=f"{type(exc).__name__}: {exc}"[:300])


async def _answer_flow_control(jsi: Any, wake: asyncio.Event) -> None:
    """``_JSI.check_flow_control_response``'s reply, sent when one is scheduled instead of on a 0.25 s tick."""
    while not jsi._conn.is_closed:
        await wake.wait()
        wake.clear()
        while jsi._fcr is not None and not jsi._conn.is_closed:
            if jsi._fciseq - jsi._psub._pending_queue.qsize() >= jsi._fcd:  # the messages before it were handed on
                reply, jsi._fcr, jsi._fcd = jsi._fcr, None, 0
                with contextlib.suppress(Exception):  # as the original: a reply that cannot go is not retried
                    await jsi._conn.publish(reply)
                break
            await asyncio.sleep(FC_POLL_S)
