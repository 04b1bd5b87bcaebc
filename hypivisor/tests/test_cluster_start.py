"""A cluster start that cannot reach NATS ends at its timeout with a clear error, even when a cancellation is lost.

Python 3.11's ``asyncio.wait_for`` returns (or raises) its inner result when a cancellation lands as that completes,
and nats-py's connect loop retries after the refused connection it then gets: a single ``asyncio.timeout`` around
the start was lost that way once in CI (a hypivisor given an address with no NATS server ran past 60 s instead of
exiting 2 after 15). The tries below lose cancellations the same way, deterministically."""

from __future__ import annotations

import asyncio

import pytest

from hypivisor.cluster.backplane import BackplaneError, cancel_until_done
from hypivisor.cluster.nats_backplane import NatsBackplane, NatsSettings


class Stubborn:
    """A loop like nats-py's connect: the first ``swallow`` cancellations it gets are lost, as in the race above."""

    def __init__(self, swallow: int) -> None:
        self.swallow = swallow
        self.lost = 0
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                if self.lost >= self.swallow:
                    raise
                self.lost += 1


async def test_a_task_that_loses_cancellations_is_cancelled_again_until_it_ends() -> None:
    s = Stubborn(swallow=3)
    task = asyncio.ensure_future(s.run())
    await asyncio.sleep(0.05)
    assert await cancel_until_done(task, 5.0)
    assert task.cancelled() and s.lost == 3


async def test_a_task_that_never_ends_is_given_up_after_the_timeout() -> None:
    s = Stubborn(swallow=10**9)
    task = asyncio.ensure_future(s.run())
    await asyncio.sleep(0.05)  # running (a task cancelled before its first step never runs its handler)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert not await cancel_until_done(task, 0.4)
    assert 0.35 < loop.time() - t0 < 2.0 and s.lost >= 2 and not task.done()
    s.stop = True
    await asyncio.wait_for(task, 2)


@pytest.mark.parametrize("swallow", [1, 5])
async def test_a_start_whose_cancellation_is_lost_still_ends_at_its_timeout(swallow: int) -> None:
    bp = NatsBackplane(
        NatsSettings(hv_id="hv-a", site="s1", servers=("nats://127.0.0.1:9",), start_timeout_s=0.5, liveness="lease")
    )
    s = Stubborn(swallow)
    bp._connect_and_open = s.run  # type: ignore[method-assign]
    start = asyncio.ensure_future(bp._start())
    try:
        done, _ = await asyncio.wait({start}, timeout=5.0)
        assert done, "the start ran on past its timeout"
        with pytest.raises(BackplaneError, match=r"no NATS server of nats://127\.0\.0\.1:9 answered within 0\.5 s"):
            start.result()
        assert s.lost == swallow
    finally:
        s.stop = True
        if not start.done():
            start.cancel()
