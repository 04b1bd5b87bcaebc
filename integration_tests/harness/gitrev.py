"""Files of the repository as they were at an earlier commit, for tests that run a previous version beside today's
(version skew, peers without a newer capability)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import REPO_ROOT


def tree_at(rev: str, out: Path, *paths: str) -> Path:
    """``paths`` of the repository at ``rev`` extracted under ``out`` (returned); the test is skipped when the
    history has no ``rev`` (a shallow clone)."""
    archive = out / "prev.tar"
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "-o", str(archive), rev, *paths],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        pytest.skip(f"git history has no {rev}: {done.stderr.strip()[:200]}")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out
