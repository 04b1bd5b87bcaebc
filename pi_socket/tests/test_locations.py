"""Shared locations, and the rule that the agent side (installer, shim, bridge) needs nothing from the daemon package.

The machine service (``pi_socket/machine``) is a daemon too: it starts pi exactly as the hypivisor does, with the
hypivisor's own path policy and spawn code, so it may import them (specs/machines.md). So may the sessions store
(``pi_socket/sessions``), which only the hypivisor and the machine service run: a resume is checked against the
same path policy there."""

from __future__ import annotations

import ast
from pathlib import Path

from pi_socket import locations

PACKAGE = Path(locations.__file__).resolve().parent


def test_no_pi_socket_module_imports_the_hypivisor():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if {"tests", "machine", "sessions"} & set(path.relative_to(PACKAGE).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] == "hypivisor"]
    assert offenders == []


def test_dashboard_dir_prefers_the_repository_build_then_the_wheel_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(locations, "_PACKAGES", tmp_path)
    repo, bundled = tmp_path / "pi_de" / "dist", tmp_path / "hypivisor" / "dashboard"
    assert locations.default_dashboard_dir() == repo  # nothing built: where `make dashboard` will put it
    bundled.mkdir(parents=True)
    (bundled / "index.html").write_text("x")
    assert locations.default_dashboard_dir() == bundled
    repo.mkdir(parents=True)
    (repo / "index.html").write_text("x")
    assert locations.default_dashboard_dir() == repo
