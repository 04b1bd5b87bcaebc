"""The shim's own checks: its pure event trimming and write queue under `node --test`, and a strict type check of the whole
shim against the `.d.ts` files of every installed pi version (the same source must fit every API)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from integration_tests.harness.pi_proc import NODE22_BIN, pi_bin, pi_package
from integration_tests.harness.pide import ensure_modules

REPO = Path(__file__).resolve().parents[1]
EXTENSION = REPO / "pi_socket" / "extension"
TSC = REPO / "pi_de" / "node_modules" / ".bin" / "tsc"
NODE22 = NODE22_BIN / "node"


@pytest.mark.skipif(not NODE22.exists(), reason="Node 22 is not installed (setup_env.sh)")
def test_event_trimming_units():
    tests = sorted(str(p) for p in (EXTENSION / "test").glob("*.test.ts"))
    assert len(tests) >= 2, tests
    done = subprocess.run([str(NODE22), "--test", *tests], capture_output=True, text=True, timeout=60, cwd=EXTENSION)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout


@pytest.mark.pi_smoke
def test_shim_type_checks_against_every_pi_version(pi_version, tmp_path):
    if not ensure_modules():
        pytest.skip("TypeScript comes with Pi-DE's node_modules (npm ci in pi_de) and npm is not here")
    types = pi_package(pi_version) / "dist" / "index.d.ts"
    if not types.exists():
        pytest.skip(f"pi {pi_version} has no type declarations at {types}")
    config = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "ESNext",
            "moduleResolution": "Bundler",
            "strict": True,
            "noEmit": True,
            "allowImportingTsExtensions": True,
            "skipLibCheck": True,
            "types": ["node"],
            "typeRoots": [str(REPO / "pi_de" / "node_modules" / "@types")],
            "paths": {"@mariozechner/pi-coding-agent": [str(types)]},
        },
        "files": [str(EXTENSION / "src" / "index.ts")],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    done = subprocess.run(
        [str(TSC), "-p", str(tmp_path / "tsconfig.json")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert pi_bin(pi_version).exists()
