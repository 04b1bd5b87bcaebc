"""Core NATS subscriptions whose messages are handled at once, in the read loop's step.

``nats-py`` hands each message of a subscription with a callback to a task of its own through an
``asyncio.Queue``: a queue put, a task wake-up, a queue get and a ``task_done`` per message. The roster's
feed and the puts' acks (specs/cluster.md §3) are the cluster's busiest subscriptions, and their handlers are
short and never wait, so they are called directly instead: the subscription's pending queue is replaced by one
that calls the handler in ``put_nowait``. A handler that raises is logged; the subscription goes on.

This relies on how the pinned ``nats-py`` (2.16) delivers a message to a subscription without a callback:
``Client._process_msg`` adds the message's size to ``_pending_size`` and calls ``_pending_queue.put_nowait``.
``integration_tests/test_cluster_direct.py`` checks it against a real ``nats-server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

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
