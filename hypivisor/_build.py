"""Build hook (``[tool.setuptools.cmdclass]`` in pyproject.toml): the non-Python parts of a wheel and an sdist.

setuptools loads this file by path while it builds, so it imports nothing from the project.

* The dashboard. A wheel always holds the built Pi-DE (``hypivisor/dashboard/``, which
  ``pi_socket.locations.default_dashboard_dir`` falls back to, so an installed wheel serves Pi-DE without Node):
  ``pi_de/dist`` when it is built; else, when the Pi-DE sources and Node 20+ with npm are there, it is built now
  (``npm ci`` when ``pi_de/node_modules`` is missing, then ``npm run build``); else the build fails with one line
  saying why. An sdist is made the same way and carries ``pi_de/dist`` (MANIFEST.in), so installing from it needs
  no Node. ``HYPI_BUILD_WITHOUT_DASHBOARD=1`` builds without it on purpose (the hypivisor then says "Pi-DE not built").
* ``skills/`` is copied to ``pi_socket/skills/`` and the shim's ``package.json`` in the wheel lists
  ``"../skills"`` instead of the repository's ``"../../skills"`` (which would point outside the package),
  and its ``version`` is the project's (``pi_socket.__version__``).

Editable installs (``pip install -e .``) are left alone: they use the repository's own folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent.parent
PI_DE = ROOT / "pi_de"
DIST = PI_DE / "dist"
NODE_MAJOR = 20
OPT_OUT = "HYPI_BUILD_WITHOUT_DASHBOARD"


def _node_problem() -> str | None:
    """Why Node cannot build Pi-DE here, or None when it can."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "Node.js (with npm) is not on PATH"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`node --version` failed: {exc}"
    m = re.match(r"v(\d+)\.", out)
    if not m or int(m.group(1)) < NODE_MAJOR:
        return f"Node.js {NODE_MAJOR}+ is needed, found {out or 'an unknown version'}"
    return None


def ensure_dashboard() -> bool:
    """True when ``pi_de/dist`` is built (building it now if it can); False only with the opt-out. SetupError with
    one line when it is missing and cannot be built."""
    if (DIST / "index.html").is_file():
        return True
    if os.environ.get(OPT_OUT) == "1":
        return False
    why = (
        "the Pi-DE sources (pi_de/package.json) are not here"
        if not (PI_DE / "package.json").is_file()
        else _node_problem()
    )
    if why:
        raise SetupError(
            f"hyper-pi: the dashboard (pi_de/dist) is not built and cannot be built here: {why}. "
            f"Install Node.js {NODE_MAJOR}+ and npm, or install from an sdist or wheel that carries it "
            f"(or set {OPT_OUT}=1 to build without the dashboard)"
        )
    npm = shutil.which("npm") or "npm"
    steps = [] if (PI_DE / "node_modules").is_dir() else [[npm, "ci", "--no-audit", "--no-fund"]]
    steps.append([npm, "run", "-s", "build"])
    for step in steps:
        done = subprocess.run(step, cwd=PI_DE, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise SetupError(f"hyper-pi: building the dashboard failed at `{' '.join(step[1:])}`: {tail[0]}")
    if not (DIST / "index.html").is_file():
        raise SetupError("hyper-pi: `npm run build` in pi_de wrote no pi_de/dist/index.html")
    return True


class BuildPy(_build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        out = Path(self.build_lib)
        if ensure_dashboard():
            target = out / "hypivisor" / "dashboard"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(DIST, target)
            self.announce(f"hyper-pi: bundled Pi-DE from {DIST}", level=2)
        else:
            self.announce(f"hyper-pi: {OPT_OUT}=1: the wheel has no dashboard", level=3)
        skills = ROOT / "skills"
        if skills.is_dir():
            target = out / "pi_socket" / "skills"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(skills, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        manifest = out / "pi_socket" / "extension" / "package.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text(encoding="utf-8"))
            pi = data.get("pi") if isinstance(data.get("pi"), dict) else {}
            if "skills" in pi:
                pi["skills"] = ["../skills"]
            data["version"] = self.distribution.get_version()  # one version: pi_socket.__version__
            manifest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class Sdist(_sdist):
    """An sdist carries the built dashboard (MANIFEST.in grafts pi_de/dist): build it first when it is missing."""

    def run(self) -> None:
        ensure_dashboard()
        super().run()
