"""``pi-socket doctor`` about the machine service, against real processes: a real hypivisor (with a token) and a
real machine service (``python -m pi_socket serve``, its own HOME and runtime dir), then with them absent, with a
service the hypivisor refuses, and with a runtime dir other users could enter. One line a check, OK/WARN/FAIL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from integration_tests.harness.hypivisor_proc import REPO_ROOT, RegistryClient
from integration_tests.harness.machines import Machine, machines_fixture  # noqa: F401 - the `machines` fixture


def doctor(m: Machine, tmp_path, **extra: str) -> tuple[int, dict[str, str]]:
    """Run the doctor as that machine's user: (exit code, check name → its line)."""
    dist = tmp_path / "dist"
    dist.mkdir(exist_ok=True)
    (dist / "index.html").write_text("<!doctype html>")
    env = {**m.env, "HYPI_DASHBOARD_DIR": str(dist), **extra}
    done = subprocess.run([sys.executable, "-m", "pi_socket", "doctor"], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    lines = {}
    for line in done.stdout.splitlines():
        head, _, _ = line.partition(":")
        if head[:4] in ("OK  ", "WARN", "FAIL"):
            lines[head[5:]] = line
    return done.returncode, lines


def install_shim(m: Machine) -> None:
    done = subprocess.run([sys.executable, "-m", "pi_socket", "install"], env=m.env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def wait_online(hv, name: str, timeout: float = 20.0) -> None:
    async def poll() -> None:
        async with await RegistryClient.connect(hv) as dash:
            deadline = time.monotonic() + timeout
            while True:
                machines = (await dash.call("list_machines"))["result"]["machines"]
                if any(x["name"] == name and x["online"] for x in machines):
                    return
                assert time.monotonic() < deadline, machines
                await asyncio.sleep(0.1)

    asyncio.run(poll())


def test_everything_there_passes_and_names_the_service(hypivisor_factory, machines, tmp_path):
    hv = hypivisor_factory(token="doc-tok", env={"PI_SOCKET_MACHINE": "hub"})
    alpha = machines(hv, "alpha")
    install_shim(alpha)
    alpha.start()
    wait_online(hv, "alpha")
    rc, lines = doctor(alpha, tmp_path)
    assert lines["machine service"].startswith(f"OK   machine service: running (pid {alpha.proc.pid}"), lines
    assert lines["machine registered"].startswith("OK   machine registered: 'alpha' online"), lines
    assert lines["runtime dir"].startswith("OK   runtime dir:") and lines["token"].startswith("OK   token: present")
    assert lines["tmux"].startswith("OK   tmux:") and not lines["agents socket"].startswith("FAIL")
    assert lines["pi version"].startswith("WARN pi version: pi 0.74.0")  # the stub says 0.74.0: not a tested line
    assert "doc-tok" not in "".join(lines.values())
    assert rc == 0, lines


def test_service_and_hypivisor_absent(hypivisor_factory, machines, tmp_path):
    hv = hypivisor_factory(token="doc-tok")
    alpha = machines(hv, "alpha")
    hv.kill()  # nothing runs: no hypivisor, no machine service
    rc, lines = doctor(alpha, tmp_path)
    assert rc == 1
    assert (
        lines["machine service"].startswith("WARN machine service: not running") and "fix: " in lines["machine service"]
    )
    assert lines["hypivisor"].startswith("FAIL hypivisor:") and "; fix: " in lines["hypivisor"]
    assert lines["machine registered"].startswith("WARN machine registered: cannot ask the hypivisor")
    assert lines["agents socket"].startswith("OK   agents socket:") and "absent" in lines["agents socket"]


def test_a_service_the_hypivisor_refuses_is_a_failure(hypivisor_factory, machines, tmp_path):
    hv = hypivisor_factory(token="doc-tok", env={"PI_SOCKET_MACHINE": "hub"})
    alpha = machines(hv, "alpha")
    alpha.env["HYPI_TOKEN"] = "wrong"
    alpha.start()
    time.sleep(1.0)  # it tries and is refused (and keeps retrying)
    rc, lines = doctor(alpha, tmp_path, HYPI_TOKEN="doc-tok")
    assert rc == 1
    assert lines["machine service"].startswith("OK   machine service: running")
    assert lines["machine registered"].startswith("FAIL machine registered: the service runs but 'alpha' is not")
    rc, lines = doctor(alpha, tmp_path, HYPI_TOKEN="")  # the doctor itself without a token: refused → FAIL token
    assert lines["token"].startswith("FAIL token:") and lines["hypivisor"].startswith("FAIL hypivisor:")


def test_a_runtime_dir_others_can_enter_fails(hypivisor_factory, machines, tmp_path):
    hv = hypivisor_factory(token="doc-tok")
    alpha = machines(hv, "alpha")
    alpha.runtime.mkdir(parents=True, exist_ok=True)
    (alpha.runtime / "hyper-pi").mkdir(mode=0o755, exist_ok=True)
    os.chmod(alpha.runtime / "hyper-pi", 0o755)
    rc, lines = doctor(alpha, tmp_path)
    assert rc == 1 and lines["runtime dir"].startswith("FAIL runtime dir:") and "0755" in lines["runtime dir"]
    assert "chmod 700" in lines["runtime dir"]


def test_a_list_of_hypivisors_is_checked_one_by_one(hypivisor_factory, machines, tmp_path):
    """HYPIVISOR_WS=down,up: the one down is a warning while another answers; the machine is found on the other."""
    from integration_tests.test_dialback import closed_port

    hv = hypivisor_factory(token="doc-tok", env={"PI_SOCKET_MACHINE": "hub"})
    down = f"ws://127.0.0.1:{closed_port()}/ws"
    alpha = machines(hv, "alpha")
    alpha.env["HYPIVISOR_WS"] = f"{down},{hv.ws_url}"
    install_shim(alpha)
    alpha.start()
    wait_online(hv, "alpha")
    env = {**alpha.env, "HYPI_DASHBOARD_DIR": str(tmp_path / "dist")}
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "index.html").write_text("<!doctype html>")
    done = subprocess.run([sys.executable, "-m", "pi_socket", "doctor"], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    hv_lines = [line for line in done.stdout.splitlines() if line[5:].startswith("hypivisor:")]
    assert len(hv_lines) == 2, done.stdout
    assert hv_lines[0].startswith(f"WARN hypivisor: {down}:") and hv_lines[1].startswith(f"OK   hypivisor: {hv.ws_url}")
    assert "OK   machine registered: 'alpha' online" in done.stdout, done.stdout
    assert done.returncode == 0, done.stdout
    alpha.env["HYPIVISOR_WS"] = f"{hv.ws_url},http://nope/ws"
    done = subprocess.run([sys.executable, "-m", "pi_socket", "doctor"], env={**env, **alpha.env}, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "FAIL hypivisor: HYPIVISOR_WS entry 'http://nope/ws' must start with ws:// or wss://" in done.stdout
    assert done.returncode == 1
