"""Shared helpers for the bridge's process-level tests (fixtures, bounded receives)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from .fake_shim import FakeShim

RECV_TIMEOUT = 5.0


@pytest.fixture
async def shim(tmp_path):
    """A started bridge driven by a FakeShim with an empty history."""
    fake = FakeShim(tmp_path)
    await fake.start()
    yield fake
    await fake.stop()


async def open_client(fake: FakeShim, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("max_size", 2**26)
    kwargs.setdefault("open_timeout", 5)
    token = fake.extra_env.get("HYPI_TOKEN")
    if token:
        kwargs.setdefault("additional_headers", {"Authorization": f"Bearer {token}"})
    return await connect(fake.url, **kwargs)


async def recv_json(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(
    ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = RECV_TIMEOUT, limit: int = 100_000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Frames until one matches (bounded in time and count); returns it and everything before it."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    for _ in range(limit):
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        msg = await recv_json(ws, left)
        if pred(msg):
            return msg, seen
        seen.append(msg)
    raise AssertionError(f"no matching frame within {timeout} s; saw types {[m.get('type') for m in seen][-20:]}")


async def send_json(ws: ClientConnection, obj: Any) -> None:
    await ws.send(json.dumps(obj))


async def init_when(fake: FakeShim, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> tuple[Any, dict]:
    """Connect until the init_state satisfies ``pred`` (the bridge applies shim lines asynchronously);
    returns the open connection and its init_state. Bounded in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ws = await open_client(fake)
        init = await recv_json(ws)
        if pred(init):
            return ws, init
        await ws.close()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"init_state never matched; last: {str(init)[:300]}")
        await asyncio.sleep(0.05)
