"""The live roster feed's bookkeeping (hypivisor/cluster/feed.py): which change applies, when a batch was missed."""

from __future__ import annotations

from hypivisor.cluster.feed import FeedOrder
from hypivisor.cluster.names import AgentKey

A = AgentKey("s", "m", "a")
B = AgentKey("s", "m", "b")


def test_a_change_applies_only_when_newer_than_the_last_applied_one_of_its_key() -> None:
    f = FeedOrder()
    assert f.newer(A, 1)
    f.applied(A, 5)
    assert not f.newer(A, 5) and not f.newer(A, 4)  # the bucket's value and the batch of the same put: once
    assert f.newer(A, 6) and f.newer(B, 1)  # keys are independent
    f.applied(A, 3)  # applied out of order by mistake: never moves back
    assert not f.newer(A, 5)


def test_a_deleted_key_refuses_an_older_put_and_takes_a_newer_one() -> None:
    f = FeedOrder()
    f.applied(A, 5)
    f.applied(A, 9, deleted=True)
    assert not f.newer(A, 7)  # a put older than the delete (a late batch, a buffered one) stays deleted
    assert f.newer(A, 10)  # registered again afterwards
    f.applied(A, 10)
    assert not f.newer(A, 9)


def test_the_deleted_keys_kept_are_bounded_oldest_first() -> None:
    f = FeedOrder(max_tombs=2)
    for i, key in enumerate((A, B, AgentKey("s", "m", "c")), start=1):
        f.applied(key, 10 * i, deleted=True)
    assert f.newer(A, 1)  # the oldest tomb was let go
    assert not f.newer(B, 19) and not f.newer(AgentKey("s", "m", "c"), 29)
    f.applied(B, 40)  # put again: no longer a tomb, so it does not count against the bound
    f.applied(AgentKey("s", "m", "d"), 50, deleted=True)
    assert not f.newer(B, 39) and not f.newer(AgentKey("s", "m", "c"), 29)


def test_an_owners_batches_in_order_are_next_and_a_skipped_number_is_a_gap() -> None:
    f = FeedOrder()
    assert f.batch("hv-a", 7, heartbeat=False) == "next"  # the first one heard sets where the owner is
    assert f.batch("hv-a", 8, heartbeat=False) == "next"
    assert f.batch("hv-a", 8, heartbeat=True) == "seen"  # a heartbeat naming the last batch: nothing missed
    assert f.batch("hv-a", 10, heartbeat=False) == "gap"  # 9 never came
    assert f.batch("hv-a", 11, heartbeat=False) == "next"
    assert f.batch("hv-a", 12, heartbeat=True) == "gap"  # a heartbeat naming a batch never seen
    assert f.batch("hv-a", 12, heartbeat=True) == "seen"
    assert f.batch("hv-a", 5, heartbeat=False) == "seen"  # an old number: nothing to do


def test_a_heartbeat_first_sets_the_start_and_owners_are_independent() -> None:
    f = FeedOrder()
    assert f.batch("hv-a", 3, heartbeat=True) == "seen"
    assert f.batch("hv-b", 1, heartbeat=False) == "next"
    assert f.batch("hv-a", 4, heartbeat=False) == "next"
    f.forget("hv-a")  # its lease ended
    assert f.batch("hv-a", 9, heartbeat=False) == "next"
    f.clear()
    assert f.batch("hv-b", 5, heartbeat=False) == "next" and f.newer(A, 1)


def test_gathered_puts_go_out_on_the_same_wall_clock_ticks_everywhere() -> None:
    from hypivisor.cluster.feed import gather_delay

    for now in (1000.0, 1000.01, 1000.0999, 1765000000.123456):
        d = gather_delay(now, 0.1)
        assert 0 < d <= 0.1 + 1e-9
        tick = (now + d) / 0.1
        assert abs(tick - round(tick)) < 1e-6, (now, d)  # lands on a multiple of the period
    # two hypivisors that start gathering at different moments of one tick put together
    assert abs((1000.013 + gather_delay(1000.013, 0.1)) - (1000.087 + gather_delay(1000.087, 0.1))) < 1e-9
