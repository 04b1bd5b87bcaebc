"""One task that writes the latest value of each key, oldest first: how cluster mode puts its own records.

A burst of changes to one key is one write (the latest wins), the backlog is bounded by the number of keys, and
keys are written in the order they first became pending. A write that raises is logged and the next one goes on:
one bad record never stops the others (the backplane puts a failed record again by itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(part="cluster")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LatestWriter(Generic[K, V]):
    def __init__(self, write: Callable[[K, V], Awaitable[None]], name: str) -> None:
        self._write = write
        self._name = name
        self._pending: dict[K, V] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def put(self, key: K, value: V) -> None:
        """Write ``value`` for ``key`` soon, instead of any value of ``key`` not written yet (it moves to the back)."""
        self._pending.pop(key, None)
        self._pending[key] = value
        self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                value = self._pending.pop(key)
                try:
                    await self._write(key, value)
                except Exception as exc:  # noqa: BLE001 - one failed write must not stop the others
                    log.warning("cluster write failed", writer=self._name, key=str(key)[:160],
                                error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
