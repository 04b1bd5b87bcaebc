"""The benchmark suite cannot rot: ``python -m bench.run --smoke`` (what ``make bench SMOKE=1`` runs)
completes and produces every row of its table. The figures of a smoke run are not checked: its sizes
are tiny and the machine is shared; ``make bench`` is the measurement (bench/RESULTS.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import EXPECTED_ROWS, SECTIONS
from integration_tests.harness.pi_proc import pi_bin
from integration_tests.harness.pide import CHROMIUM

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow]


@pytest.mark.pi
@pytest.mark.browser
def test_bench_smoke_produces_every_row(tmp_path):
    if not any(pi_bin(v).exists() for v in ("0.73.1", "1.5.2")):
        pytest.skip("pi is not installed: run bash integration_tests/setup_env.sh")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    out = tmp_path / "results"
    # every section but the cluster's, which test_bench_cluster_smoke_produces_every_row runs on its own (it needs
    # neither pi nor Chromium): the same smoke run, not twice
    sections = [s for s in SECTIONS if s != "cluster"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--only", ",".join(sections), "--results-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((out / "latest.json").read_text())
    assert report["smoke"] and not report["errors"], report["errors"]
    by_section: dict[str, list[dict]] = {}
    for row in report["rows"]:
        by_section.setdefault(row["section"], []).append(row)
    assert {k: len(v) for k, v in by_section.items()} == {k: n for k, n in EXPECTED_ROWS.items() if k != "13 cluster"}
    for row in report["rows"]:
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"]), row
    table = (out / "latest.md").read_text()
    assert all(row["metric"] in table for row in report["rows"])


def test_bench_cluster_smoke_produces_every_row(tmp_path):
    """Section 13 alone at tiny sizes (its own 3-node NATS cluster, 3 + 1 hypivisors, 240 agents): every row, every
    figure finite, the fail-over completed (every agent visible again on every dashboard). Needs only the pinned
    nats-server, so it runs where pi or Chromium are missing."""
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--only", "cluster", "--results-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((out / "latest.json").read_text())
    assert report["smoke"] and not report["errors"], report["errors"]
    rows = report["rows"]
    assert {row["section"] for row in rows} == {"13 cluster"} and len(rows) == EXPECTED_ROWS["13 cluster"]
    for row in rows:
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"]), row
    failover = next(row for row in rows if row["metric"].startswith("fail-over"))
    assert "0 missing at the end" in failover["note"], failover
