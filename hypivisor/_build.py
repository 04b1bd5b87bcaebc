"""Build hook (``[tool.setuptools.cmdclass]`` in pyproject.toml): the non-Python parts of a wheel.

setuptools loads this file by path while it builds, so it imports nothing from the project.

* ``pi_de/dist`` (when it was built, e.g. by ``make dashboard``) is copied to ``hypivisor/dashboard/``:
  ``pi_socket.locations.default_dashboard_dir`` falls back to it when there is no repository ``pi_de/dist``,
  so an installed wheel serves Pi-DE without Node.
* ``skills/`` is copied to ``pi_socket/skills/`` and the shim's ``package.json`` in the wheel lists
  ``"../skills"`` instead of the repository's ``"../../skills"`` (which would point outside the package),
  and its ``version`` is the project's (``pi_socket.__version__``).

Editable installs (``pip install -e .``) are left alone: they use the repository's own folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools.command.build_py import build_py as _build_py

ROOT = Path(__file__).resolve().parent.parent


class BuildPy(_build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        out = Path(self.build_lib)
        dist = ROOT / "pi_de" / "dist"
        if (dist / "index.html").is_file():
            target = out / "hypivisor" / "dashboard"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(dist, target)
            self.announce(f"hyper-pi: bundled Pi-DE from {dist}", level=2)
        else:
            self.announce(
                "hyper-pi: pi_de/dist is not built; the wheel has no dashboard (run `make dashboard`)", level=3
            )
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
