"""Pure parts of the benchmark suite: how ratios are formed and shown (no processes started)."""

from __future__ import annotations

import pytest

from bench.common import Row, median
from bench.run import ratio_to_target, table


def test_paired_ratio_wins_over_the_ratio_of_medians():
    row = Row("1 proxy", "x", 100.0, "msg/s", "nginx", 200.0, paired_ratio=0.9)
    assert row.ratio == 0.9
    assert Row("1 proxy", "x", 100.0, "msg/s", "nginx", 200.0).ratio == 0.5


def test_no_reference_means_no_ratio():
    assert Row("s", "x", 1.0, "ms").ratio is None
    assert Row("s", "x", 1.0, "ms", "nginx", 0).ratio is None
    assert Row("s", "x", None, "ms", "nginx", 2.0).ratio is None


@pytest.mark.parametrize(
    "target, unit, value, want",
    [
        ("<= 50 ms", "ms", 15.0, 0.3),
        ("<= 1,000 ms", "ms", 500.0, 0.5),
        ("<= 400 B, constant", "B", 100.0, 0.25),
        ("<= 16.7 ms (60 fps)", "ms", 16.7, 1.0),
    ],
)
def test_a_figure_without_reference_is_shown_against_its_limit(target, unit, value, want):
    row = Row("s", "x", value, unit, target=target)
    ratio_to_target(row)
    assert row.ref == "target" and row.ratio == pytest.approx(want)


@pytest.mark.parametrize(
    "row",
    [
        Row("s", "x", 3.0, "msg/s", target=">= 0.9x nginx"),  # a ratio target, not a limit in the row's unit
        Row("s", "x", 3.0, "KB", target="<= 5 MB"),  # another unit: not comparable as is
        Row("s", "x", 3.0, "ms"),  # nothing to compare with
        Row("s", "x", 3.0, "ms", "idle page", 2.0, target="<= 16 ms"),  # a same-run reference is kept
    ],
)
def test_ratio_to_target_leaves_other_rows_alone(row):
    before = (row.ref, row.ref_value, row.ratio)
    ratio_to_target(row)
    assert (row.ref, row.ref_value, row.ratio) == before


def test_table_shows_ratio_reference_and_verdict():
    rows = [
        Row("1 proxy", "hyp", 90.0, "msg/s", "nginx", 100.0, ">= 0.9x nginx", met=True, reps=5),
        Row("4 registry", "p99", 60.0, "ms", target="<= 50 ms", met=False),
    ]
    ratio_to_target(rows[1])
    out = table(rows).splitlines()
    assert out[2].startswith("| 1 proxy | hyp | 90 | msg/s | 0.90× | nginx | >= 0.9x nginx | yes | 5 |")
    assert "| 1.20× | target | <= 50 ms | **no** |" in out[3]


def test_median_ignores_missing_figures():
    assert median([None, 3.0, 1.0, 2.0]) == 2.0
    assert median([None]) != median([None])  # nan: no figure, never a made-up one


def test_a_pinned_section_gives_the_cores_back():
    """Children inherit affinity: a section left pinned would squeeze every later one onto one core."""
    import os

    from bench.common import pinned_self

    before = os.sched_getaffinity(0)
    with pinned_self(0):
        assert os.sched_getaffinity(0) == ({0} if len(before) > 1 else before)
    assert os.sched_getaffinity(0) == before


def test_pair_ratios_keep_only_repetitions_with_both_figures():
    from bench.common import pair_ratios

    assert pair_ratios([2.0, None, 3.0, 4.0], [1.0, 5.0, 0, 2.0]) == [2.0, 2.0]


def test_ratios_note_lists_every_pair_once_there_are_enough():
    from bench.common import ratios_note

    assert ratios_note("per-pair ratios", [1.0, 1.054]) == "per-pair ratios 1.00, 1.05"
    assert ratios_note("per-rep ratios", [1.2], min_count=2) == ""


def test_int_after_reads_total_and_next_cursor_without_parsing():
    from bench.registry import NEXT, TOTAL, int_after

    assert int_after(b'{"event":"init","nodes":[],"protocol_version":1,"total":10000}', TOTAL) == 10000
    assert int_after(b'{"id":"q","result":{"nodes":[{"id":"a"}],"next_cursor":2345}}', NEXT) == 2345
    assert int_after(b'{"id":"q","result":{"nodes":[],"next_cursor":null}}', NEXT) is None
    assert int_after(b'{"id":"q","result":{"nodes":[]}}', NEXT) is None


def test_gate_time_added_is_the_median_of_same_round_differences():
    from bench.approvals import gate_rows

    off, rule = [0.020, 0.030, 0.050], [0.100, 0.500, 0.090]  # ms per call; round 2 was disturbed
    base, gated, added = gate_rows("1.6.0", 50, {"off": off, "rule": rule})
    assert added.value == pytest.approx(0.08) and added.met is True and added.reps == 3
    ratio_to_target(added)
    assert added.ratio == pytest.approx(0.08) and added.ref == "target"
    assert gated.ratio == pytest.approx(5.0) and base.ratio == 1.0  # median of per-round ratios 5, 16.7, 1.8
    _, _, slow = gate_rows("1.6.0", 50, {"off": off, "rule": [1.2, 1.3, 1.1]})
    assert slow.met is False


def test_approval_round_trips_are_p99_against_the_prompt_round_trip():
    from bench.approvals import rtt_rows

    n = 100
    out = {
        "prompt": [5.0] * n,
        "ask": [2.0] * (n - 1) + [400.0],  # one stall: p99 of 100 samples is the 99th, not the maximum
        "run": [8.0] * (n - 2) + [60.0, 70.0],
        "resolved": [3.0] * n,
    }
    prompt, ask, run = rtt_rows("1.6.0", out)
    assert prompt.value == 5.0 and prompt.met is None
    assert ask.value == 2.0 and ask.ratio == pytest.approx(0.4) and ask.met is True and "max 400" in ask.note
    assert run.value == 60.0 and run.met is False and run.reps == n
