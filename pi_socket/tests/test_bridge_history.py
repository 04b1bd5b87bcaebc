"""History mirror and pager: cursor semantics with no duplicates or gaps (specs/pi-runtime.md §6)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi_socket.bridge.history import HistoryMirror, json_size, usage_totals

from .fake_shim import assistant_message, user_message


def msgs(n: int, size: int = 10) -> list[dict]:
    return [user_message(f"m{i}:" + "x" * size, i) for i in range(n)]


def ids(window) -> list[int]:
    return [m["timestamp"] for m in window.messages]


def walk_all(mirror: HistoryMirror, budget: int, limit: int) -> list[int]:
    """Init window then pages with before=cursor until cursor 0, as a client does."""
    window = mirror.tail_window(budget)
    seen = ids(window)
    cursor = window.cursor
    for _ in range(len(mirror) + 1):
        if cursor == 0:
            break
        page = mirror.page(cursor, limit, budget)
        assert page.cursor < cursor, "a page must make progress"
        seen = ids(page) + seen
        cursor = page.cursor
    return seen


def test_tail_window_fits_budget_and_keeps_newest():
    mirror = HistoryMirror(msgs(100, size=1000))
    window = mirror.tail_window(10_000)
    assert window.truncated and window.total == 100
    assert ids(window) == list(range(window.cursor, 100))
    assert len(orjson.dumps(window.messages)) <= 10_000
    assert len(orjson.dumps(mirror.messages[window.cursor - 1 :])) > 10_000


def test_small_history_is_not_truncated():
    window = HistoryMirror(msgs(5)).tail_window(500 * 1024)
    assert (window.cursor, window.truncated, len(window.messages)) == (0, False, 5)


def test_one_huge_message_is_still_sent():
    mirror = HistoryMirror(msgs(3) + [user_message("y" * 5000, 99)])
    window = mirror.tail_window(1000)
    assert ids(window) == [99] and window.cursor == 3


def test_empty_history():
    window = HistoryMirror().tail_window(1000)
    assert (window.messages, window.cursor, window.total) == ([], 0, 0)
    assert HistoryMirror().page(10, 50, 1000).messages == []


def test_page_edges():
    mirror = HistoryMirror(msgs(10))
    assert ids(mirror.page(0, 5, 10**6)) == []  # before 0: nothing older
    assert ids(mirror.page(100, 3, 10**6)) == [7, 8, 9]  # before > total: clamped
    assert ids(mirror.page(4, 50, 10**6)) == [0, 1, 2, 3]  # limit larger than what remains
    page = mirror.page(6, 2, 10**6)
    assert (ids(page), page.cursor, page.total) == ([4, 5], 4, 10)


def test_paging_2000_messages_under_500kb_visits_each_exactly_once():
    mirror = HistoryMirror(msgs(2000, size=600))
    window = mirror.tail_window(500 * 1024)
    assert window.truncated and 0 < window.cursor < 2000
    assert walk_all(mirror, 500 * 1024, 50) == list(range(2000))


def test_page_budget_cuts_from_newest_side_without_gaps():
    mirror = HistoryMirror(msgs(50, size=1000))
    page = mirror.page(50, 50, 5000)
    assert ids(page) == list(range(page.cursor, 50)) and len(page.messages) < 50


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=0, max_value=3000), min_size=0, max_size=60),
    st.integers(1, 40),
    st.integers(200, 20_000),
)
def test_any_sizes_any_limits_walk_is_exact(sizes, limit, budget):
    mirror = HistoryMirror([user_message("z" * s, i) for i, s in enumerate(sizes)])
    assert walk_all(mirror, budget, limit) == list(range(len(sizes)))


def test_system_and_malformed_messages_are_not_mirrored():
    mirror = HistoryMirror([{"role": "system", "content": "sp"}, "junk", {"content": []}, user_message("a", 1)])
    assert ids(mirror.tail_window(10**6)) == [1]


def test_reset_reconciles_messages_that_arrived_during_fetch():
    mirror = HistoryMirror()
    snapshot = msgs(3)
    arrived = [snapshot[2], user_message("late", 3)]  # one already in the snapshot, one not yet
    mirror.reset(snapshot, arrived)
    assert ids(mirror.tail_window(10**6)) == [0, 1, 2, 3]


def test_sizes_are_json_sizes():
    m = user_message("hello", 1)
    assert json_size(m) == len(orjson.dumps(m)) + 1


def test_usage_totals_sum_assistant_usage_only():
    tokens, cost = usage_totals(
        [
            assistant_message("a", 1, tokens=5, cost=0.5),
            user_message("u", 2),
            assistant_message("b", 3, tokens=7, cost=0.25),
            {"role": "assistant", "usage": "bad"},
        ]
    )
    assert tokens == {"input": 12, "output": 12, "cache_read": 0, "cache_write": 0, "total": 24}
    assert cost == pytest.approx(0.75)
