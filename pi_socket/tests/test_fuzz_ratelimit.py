"""The per-connection token bucket (``pi_socket/ratelimit.py``) used by /ws and the agent port."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pi_socket.ratelimit import TokenBucket


def test_burst_then_refused_then_refilled():
    b = TokenBucket(rate=10, burst=100, now=0.0)
    assert all(b.take(0.0) for _ in range(100))
    assert not b.take(0.0) and not b.take(0.05)  # half a token is not a token
    assert b.take(0.1)  # one token per 1/rate s
    assert not b.take(0.1)
    assert sum(b.take(100.0) for _ in range(500)) == 100  # never more than the burst after a long pause


def test_zero_rate_disables_the_limit():
    b = TokenBucket(rate=0, burst=0, now=0.0)
    assert all(b.take(0.0) for _ in range(100_000))


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 1000), burst=st.integers(1, 500), gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300))
def test_never_more_than_burst_plus_rate_times_elapsed(rate, burst, gaps):
    b = TokenBucket(rate, burst, now=0.0)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += b.take(now)
        assert taken <= burst + rate * now + 1e-6
    # and a clock going backwards (never with monotonic, but harmless) grants nothing
    before = b.tokens
    b.take(now - 10)
    assert b.tokens <= before
