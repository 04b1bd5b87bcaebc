"""The daemon's runtime modules do not depend on the demo; the demo's commands still run as modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hypivisor

PACKAGE = Path(hypivisor.__file__).resolve().parent


def test_no_runtime_module_imports_the_demo():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts[0] in ("demo", "tests"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [f"{node.module}.{a.name}" for a in node.names]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{'/'.join(parts)}: {n}" for n in names if n.startswith(("hypivisor.demo", "hypivisor.fake_llm"))
            ]
    assert offenders == []


def test_demo_commands_run_as_modules_without_warnings():
    for module in ("hypivisor.demo", "hypivisor.demo.fake_llm"):
        out = subprocess.run(
            [sys.executable, "-W", "error", "-m", module, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=PACKAGE.parent,
        )
        assert out.returncode == 0 and f"python -m {module}" in out.stdout, (module, out.stderr[-500:])
