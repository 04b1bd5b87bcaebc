"""``make pi-latest``'s pure parts (reading pytest's report, the README row) and ``HYPI_PI_VERSIONS``."""

from __future__ import annotations

import datetime

import pytest

from integration_tests import pi_latest
from integration_tests.harness.pi_proc import PINNED_PI_VERSIONS, versions_from_env

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="integration_tests.test_pi_link" name="test_a[1.7.0]" />
<testcase classname="integration_tests.test_pi_link" name="test_b[1.7.0]"><failure message="x">boom</failure></testcase>
<testcase classname="integration_tests.test_pi_tui" name="test_c[1.7.0]"><skipped message="no tmux" /></testcase>
<testcase classname="integration_tests.test_pi_tui" name="test_d[1.7.0]"><error message="setup">boom</error></testcase>
</testsuite></testsuites>"""


def test_versions_come_from_the_environment_when_it_names_any():
    assert versions_from_env(None) == PINNED_PI_VERSIONS
    assert versions_from_env(" , ") == PINNED_PI_VERSIONS
    assert versions_from_env("1.7.0") == ("1.7.0",)
    assert versions_from_env("0.73.1, 1.7.0,1.7.0") == ("0.73.1", "1.7.0")


def test_junit_counts_and_failed_ids():
    out = pi_latest.parse_junit(JUNIT)
    assert (out.passed, out.failed, out.skipped) == (1, 2, 1)
    assert out.failures == [
        "integration_tests.test_pi_link::test_b[1.7.0]",
        "integration_tests.test_pi_tui::test_d[1.7.0]",
    ]
    assert not out.compatible
    assert not pi_latest.Outcome().compatible, "nothing ran is not compatible"
    assert pi_latest.Outcome(passed=3, skipped=1).compatible


def test_the_line_and_the_readme_row():
    day = datetime.date(2026, 12, 6)
    ok = pi_latest.Outcome(passed=40, skipped=2)
    line = pi_latest.compat_line("1.7.0", day, ok)
    assert line.startswith("pi-latest: pi 1.7.0 ") and "2026-12-06: COMPATIBLE (40 passed, 0 failed, 2 skipped)" in line
    readme = f"intro\n{pi_latest.MARK_START}\n| old row |\n{pi_latest.MARK_END}\nrest\n"
    updated = pi_latest.update_readme(readme, pi_latest.readme_row("1.7.0", day, ok))
    assert "| old row |" not in updated and updated.startswith("intro\n") and updated.endswith("rest\n")
    assert "| 1.7.0 (newest on npm) | `make pi-latest` | 2026-12-06: compatible, 40 passed, 2 skipped |" in updated
    bad = pi_latest.readme_row("1.7.0", day, pi_latest.Outcome(passed=1, failed=2))
    assert "**incompatible** (2 failed)" in bad
    with pytest.raises(ValueError):
        pi_latest.update_readme("no markers", "row")


def test_the_readme_has_the_markers():
    text = (pi_latest.REPO / "README.md").read_text(encoding="utf-8")
    assert pi_latest.update_readme(text, "| row |").count("| row |") == 1
