"""LatestWriter (hypivisor/cluster/writer.py): the latest value per key, oldest key first, a failure stops nothing."""

from __future__ import annotations

import asyncio

from hypivisor.cluster.writer import LatestWriter


async def test_a_burst_to_one_key_is_one_write_of_the_latest_value_in_the_order_keys_became_pending() -> None:
    written: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def write(key: str, value: int) -> None:
        await gate.wait()  # the first write is slow: everything after it queues up meanwhile
        written.append((key, value))

    w: LatestWriter[str, int] = LatestWriter(write, "test")
    w.start()
    try:
        w.put("a", 1)
        await asyncio.sleep(0)  # the writer took "a" and waits in it
        for v in range(2, 6):
            w.put("b", v)
        w.put("c", 1)
        w.put("b", 9)  # moves "b" behind "c"
        assert len(w) == 2
        gate.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert written == [("a", 1), ("c", 1), ("b", 9)]
    finally:
        await w.close()


async def test_a_write_that_fails_does_not_stop_the_next() -> None:
    written: list[str] = []

    async def write(key: str, value: int) -> None:
        if key == "bad":
            raise RuntimeError("store refused")
        written.append(key)

    w: LatestWriter[str, int] = LatestWriter(write, "test")
    w.start()
    try:
        w.put("bad", 1)
        w.put("good", 1)
        for _ in range(50):
            await asyncio.sleep(0)
        assert written == ["good"] and len(w) == 0
    finally:
        await w.close()
