"""The HYPIVISOR_WS list parser and the fail-over order (pure, pi_socket/hypivisors.py)."""

from __future__ import annotations

import pytest

from pi_socket.hypivisors import MAX_HYPIVISORS, Failover, HypivisorListError, disabled, parse

A, B, C = "ws://a:31415/ws", "ws://b:31415/ws", "wss://c.example/hp/ws"


def test_one_url_is_a_list_of_one() -> None:
    assert parse(" ws://localhost:31415/ws ") == ("ws://localhost:31415/ws",)


def test_list_in_order_duplicates_dropped_empty_entries_skipped() -> None:
    assert parse(f"{A}, {B},{A},,{C},") == (A, B, C)


@pytest.mark.parametrize("value", ["", "off", "OFF", " none ", "0"])
def test_off(value: str) -> None:
    assert disabled(value)
    assert parse(value) == ()


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("http://b:31415/ws", "ws:// or wss://"),
        ("b:31415", "ws:// or wss://"),
        ("ws:///ws", "no host"),
        ("ws://b:99999/ws", "not a URL"),
        ("ws://b:port/ws", "not a URL"),
        ("ws://b c:1/ws", "white space"),
    ],
)
def test_bad_entry_is_named(entry: str, says: str) -> None:
    with pytest.raises(HypivisorListError) as err:
        parse(f"{A},{entry}")
    assert says in str(err.value)
    assert entry.strip() in str(err.value)


def test_only_commas_names_nothing() -> None:
    with pytest.raises(HypivisorListError, match="names no hypivisor"):
        parse(" , ,")


def test_at_most_sixteen() -> None:
    ok = ",".join(f"ws://h{i}:1/ws" for i in range(MAX_HYPIVISORS))
    assert len(parse(ok)) == MAX_HYPIVISORS
    assert len(parse(ok + ",ws://h0:1/ws")) == MAX_HYPIVISORS  # a duplicate does not count
    with pytest.raises(HypivisorListError, match="at most 16"):
        parse(ok + ",ws://h99:1/ws")


def test_single_url_waits_the_backoff_every_time_as_before() -> None:
    f = Failover([A], 1.0, 10.0)
    assert [f.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert f.url == A
    f.succeeded()
    assert f.failed() == 1.0


def test_list_moves_on_at_once_then_backs_off_across_the_list() -> None:
    f = Failover([A, B, C], 1.0, 10.0)
    assert f.url == A
    assert (f.failed(), f.url) == (0.0, B)  # the first fail-over is immediate
    assert (f.failed(), f.url) == (1.0, C)  # then one backoff sequence across the whole list
    assert (f.failed(), f.url) == (2.0, A)
    assert (f.failed(), f.url) == (4.0, B)


def test_sticks_to_the_one_that_works_and_moves_on_when_lost() -> None:
    f = Failover([A, B], 1.0, 10.0)
    f.failed()  # A down at start: B at once
    f.succeeded()
    assert f.url == B  # stays on B (no return to A while B works)
    assert (f.failed(), f.url) == (0.0, A)  # B lost: A at once
    assert (f.failed(), f.url) == (1.0, B)
    f.succeeded()
    assert (f.failed(), f.url) == (0.0, A)  # a success resets the immediate fail-over and the backoff
    assert f.failed() == 1.0


def test_ordered_puts_the_current_first() -> None:
    f = Failover([A, B, C])
    assert f.value() == f"{A},{B},{C}"
    f.failed()
    assert f.ordered() == (B, C, A)
    assert parse(f.value()) == (B, C, A)


def test_failover_needs_a_url() -> None:
    with pytest.raises(ValueError):
        Failover([])
