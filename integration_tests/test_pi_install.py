"""`python -m pi_socket install | uninstall | doctor` against real pi installs (0.73.1, 1.5.2, 1.6.0).

The ``pi_home`` fixture already ran ``install`` (as a user would); these tests check what it printed and
changed, that pi really loads the shim because of it (and stops after ``uninstall``), the Node version
check, and that ``doctor`` fails with a fix for each missing piece.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from integration_tests.harness.pi_proc import NODE22_BIN, pi_bin, pi_path_env

pytestmark = [pytest.mark.pi]

EXTENSION_DIR = Path(__file__).resolve().parents[1] / "pi_socket" / "extension"


@pytest.mark.pi_smoke
def test_install_prints_changes_is_idempotent_and_uninstall_removes(pi_home, start_pi, pi_version):
    out = pi_home.install_output
    settings = json.loads((pi_home.agent / "settings.json").read_text())
    assert settings["packages"] == [str(EXTENSION_DIR)]
    assert settings["defaultModel"] == "fake-model"  # the user's settings are kept
    config = json.loads((pi_home.agent / "pi-socket.json").read_text())
    assert Path(config["python"]).exists() and (Path(config["pythonpath"]) / "pi_socket").is_dir()
    assert (
        f"changed: {pi_home.agent / 'settings.json'}" in out and f"changed: {pi_home.agent / 'pi-socket.json'}" in out
    )

    again = pi_home.run_installer("install")
    assert "\nchanged:" not in again and again.count("\nunchanged:") == 2
    assert json.loads((pi_home.agent / "settings.json").read_text())["packages"] == [str(EXTENSION_DIR)]

    # installed: pi starts the bridge by itself
    rc, _, err, _ = start_pi(pi_version, mode="print", prompt="with the shim").wait()
    assert rc == 0, err
    removed = pi_home.run_installer("uninstall")
    assert "removed" in removed and not (pi_home.agent / "pi-socket.json").exists()
    assert json.loads((pi_home.agent / "settings.json").read_text())["packages"] == []
    without = start_pi(pi_version, mode="print", prompt="without the shim")
    rc, out, err, _ = without.wait()
    assert rc == 0 and "without the shim" in out, err
    assert without.bridge_log() == [], "the shim still ran after uninstall"


@pytest.mark.skipif(not pi_bin("1.5.2").exists(), reason="pi 1.5.2 is not installed (setup_env.sh)")
def test_install_names_a_node_too_old_for_pi_1_5(pi_home):
    node20_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if str(NODE22_BIN) not in p)
    old = pi_home.run_installer("install", "--pi", str(pi_bin("1.5.2")), env={"PATH": node20_path})
    if "node on PATH: 22" in old:
        pytest.skip("the machine's default node is already >= 22")
    assert "version 1.5.2" in old
    assert "too old for pi 1.5.2 (needs >= 22.19.0)" in old
    ok = pi_home.run_installer("install", "--pi", str(pi_bin("1.5.2")), env={"PATH": pi_path_env("1.5.2", node20_path)})
    assert "node on PATH: 22." in ok and "WARNING" not in ok


def test_doctor_passes_when_everything_is_there(pi_home, pi_version, hypivisor, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html>")
    out = pi_home.run_installer(
        "doctor",
        "--pi",
        str(pi_bin(pi_version)),
        env={
            "HYPIVISOR_WS": hypivisor.ws_url,
            "HYPI_DASHBOARD_DIR": str(dist),
            "PATH": pi_path_env(pi_version, os.environ["PATH"]),
        },
    )
    assert "all checks passed" in out, out
    assert f"version {pi_version}" in out and "ready on port" in out


def test_doctor_names_each_failure_with_its_fix(pi_home, tmp_path):
    pi_home.run_installer("uninstall")
    import subprocess
    import sys

    env = {
        **pi_home.env,
        "PYTHONPATH": str(EXTENSION_DIR.parents[1]),
        "HYPIVISOR_WS": "ws://127.0.0.1:9/ws",
        "HYPI_DASHBOARD_DIR": str(tmp_path / "nothing-built"),
        "PI_BIN": str(tmp_path / "no-pi-here"),
    }
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "pi").exists())
    done = subprocess.run(
        [sys.executable, "-m", "pi_socket", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXTENSION_DIR.parents[1],
    )
    assert done.returncode == 1
    out = done.stdout
    for name in ("pi", "shim", "hypivisor", "dashboard"):
        assert f"FAIL {name}:" in out, out
    assert "OK   bridge:" in out  # the bridge itself is fine
    fails = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 4 and all("; fix: " in line for line in fails), out
    assert "python -m pi_socket install" in out and "python -m hypivisor" in out


def test_doctor_checks_the_hypivisor_token(pi_home, hypivisor_factory):
    hv = hypivisor_factory(token="doctor-secret")
    base = {"HYPIVISOR_WS": hv.ws_url, "HYPI_DASHBOARD_DIR": str(EXTENSION_DIR)}
    refused = pi_home.run_installer("doctor", env={**base, "HYPI_TOKEN": "wrong"})
    assert "FAIL hypivisor:" in refused and "fix: set HYPI_TOKEN" in refused, refused
    accepted = pi_home.run_installer("doctor", env={**base, "HYPI_TOKEN": "doctor-secret"})
    assert "OK   hypivisor:" in accepted, accepted
    assert "doctor-secret" not in accepted + refused  # never printed
