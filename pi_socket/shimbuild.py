"""``python -m pi_socket build-shim [--check]``: the one file pi loads, bundled from ``extension/src/*.ts``.

pi loads extensions through jiti, which pays for every module it loads (resolution, a cache lookup keyed
by a hash of the source, a ``vm`` compile): the six-module shim cost an unwatched ``pi -p`` ~2 % more wall
and CPU than the same code in one file (bench/RESULTS.md, "What was tried", target 3). So the package's
manifest names ``dist/pi-socket.js``: ``src/*.ts`` bundled by esbuild, committed, never edited by hand.
``src/`` stays the source of truth (unit tests run it directly under Node 22).

The bundle's first line records a digest of the sources it was built from, so a stale bundle is found
without esbuild: ``--check``, ``python -m pi_socket doctor`` and a test compare it with ``src/``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

EXTENSION_DIR = Path(__file__).resolve().parent / "extension"
SRC_DIR = EXTENSION_DIR / "src"
ENTRY = "src/index.ts"
BUNDLE = EXTENSION_DIR / "dist" / "pi-socket.js"
_DIGEST_RE = re.compile(r"sources sha256:([0-9a-f]{64})")


def sources_digest(src_dir: Path = SRC_DIR) -> str:
    """sha256 over every ``*.ts`` under ``src_dir`` (relative name and bytes, in name order)."""
    h = hashlib.sha256()
    for path in sorted(src_dir.rglob("*.ts")):
        h.update(path.relative_to(src_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def banner(digest: str) -> str:
    return (
        f"// GENERATED from src/*.ts by `python -m pi_socket build-shim` (sources sha256:{digest}).\n"
        "// Edit src/, then rebuild: pi loads this one file (one module for pi's loader instead of one per source)."
    )


def bundle_digest(bundle: Path = BUNDLE) -> str | None:
    """The sources digest recorded in ``bundle``'s banner (None: missing or not a bundle)."""
    try:
        with bundle.open(encoding="utf-8") as fh:
            m = _DIGEST_RE.search(fh.readline())
    except OSError:
        return None
    return m[1] if m else None


def stale_reason(bundle: Path = BUNDLE, src_dir: Path = SRC_DIR) -> str | None:
    """Why ``bundle`` does not match ``src_dir`` (None: it does)."""
    recorded = bundle_digest(bundle)
    if recorded is None:
        return f"{bundle} is missing or has no sources digest"
    if recorded != sources_digest(src_dir):
        return f"{bundle} was built from other sources than {src_dir}"
    return None


def find_esbuild() -> str | None:
    """The esbuild Pi-DE's npm install brings (pinned by its lockfile), else one on PATH."""
    local = EXTENSION_DIR.parent.parent / "pi_de" / "node_modules" / ".bin" / "esbuild"
    return str(local) if local.exists() else shutil.which("esbuild")


def esbuild_argv(esbuild: str, outfile: Path, digest: str) -> list[str]:
    """Run in EXTENSION_DIR, so the bundle's region comments name ``src/…`` (no machine paths)."""
    return [
        esbuild,
        ENTRY,
        "--bundle",
        "--platform=node",
        "--format=esm",
        "--target=node20",
        "--legal-comments=none",
        "--log-level=warning",
        f"--banner:js={banner(digest)}",
        f"--outfile={outfile}",
    ]


class BuildError(RuntimeError):
    pass


def build(outfile: Path = BUNDLE) -> Path:
    """Bundle ``src/`` into ``outfile``; BuildError with the reason when esbuild is missing or fails."""
    esbuild = find_esbuild()
    if not esbuild:
        raise BuildError("esbuild not found: run `npm ci` in pi_de (it brings esbuild) or put esbuild on PATH")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            esbuild_argv(esbuild, outfile.resolve(), sources_digest()),
            cwd=EXTENSION_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{esbuild}: {exc}") from exc
    if done.returncode != 0:
        raise BuildError(f"esbuild failed ({done.returncode}): {(done.stdout + done.stderr).strip()[-2000:]}")
    return outfile


def main(check: bool, out=print) -> int:
    if check:
        reason = stale_reason()
        out(f"stale: {reason}; run `python -m pi_socket build-shim`" if reason else f"up to date: {BUNDLE}")
        return 1 if reason else 0
    try:
        path = build()
    except BuildError as exc:
        out(f"error: {exc}")
        return 1
    out(f"built {path} ({path.stat().st_size:,} bytes) from {SRC_DIR}")
    return 0
