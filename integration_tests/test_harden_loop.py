"""The hardening loop end to end, on real processes.

An error injected into the real bridge's outer boundaries (``PI_SOCKET_FAULT``)
is logged with ``needsHardening``; ``python -m pi_socket.harden report`` shows it
as a new class; once a ledger entry marks it fixed it disappears and ``status``
is healthy; when the bridge hits it again after the fix it comes back as
recurring, pointing at the fix commit. A second test covers the hypivisor's log
(same oplog format) read in the same report.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAULTS = ("stdin.line", "session.load")


def harden(tmp: Path, *argv: str) -> subprocess.CompletedProcess:
    """The helper exactly as the skill runs it, on this test's logs and ledger."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pi_socket.harden",
            *argv,
            "--log-dir",
            str(tmp / "logs"),
            "--ledger",
            str(tmp / "ledger.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def report(tmp: Path) -> dict:
    done = harden(tmp, "report", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _lines(stream, out: queue.Queue) -> None:
    for raw in stream:
        out.put(raw)


def run_bridge_with_faults(tmp: Path, faults: str, extra_lines: tuple[dict, ...] = ()) -> None:
    """One real bridge life: faults armed, a shim's hello (and any extra shim lines), wait for `ready`, then `bye`."""
    env = {
        **os.environ,
        "PI_SOCKET_FAULT": faults,
        "PI_SOCKET_LOG_DIR": str(tmp / "logs"),
        "PI_SOCKET_PORT": "0",
        "PI_SOCKET_HOST": "127.0.0.1",
        "HYPIVISOR_WS": "off",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pi_socket.bridge"],
        cwd=tmp,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    try:
        hello = {
            "t": "hello",
            "v": 1,
            "node_id": "harden-e2e",
            "pid": os.getpid(),
            "cwd": str(tmp),
            "pi_version": "0.73.1",
            "mode": "print",
            "session": {},
        }
        proc.stdin.write('{"t": "noop"}\n')  # the first line meets the armed stdin.line fault
        proc.stdin.write(json.dumps(hello) + "\n")
        for line in extra_lines:
            proc.stdin.write(json.dumps(line) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "bridge never said ready"
            try:
                line = json.loads(out.get(timeout=remaining))
            except queue.Empty:
                continue
            if line.get("t") == "ready":
                break
        time.sleep(0.3)  # let the background session.load task hit its fault
        proc.stdin.write('{"t": "bye", "reason": "quit"}\n')
        proc.stdin.close()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def by_boundary(data: dict) -> dict[str, dict]:
    return {c["boundary"]: c for c in data["classes"]}


def record_fixed(tmp: Path, klass: dict) -> None:
    done = harden(
        tmp,
        "record",
        "--class-id",
        klass["class_id"],
        "--status",
        "fixed",
        "--root-cause",
        f"test: fault injected at {klass['boundary']}",
        "--action",
        "test: nothing to change, the fault is synthetic",
        "--files",
        "pi_socket/bridge/faults.py",
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_an_injected_bridge_fault_is_reported_then_cleared_by_the_ledger_then_recurs(tmp_path):
    assert harden(tmp_path, "status").returncode == 0  # nothing logged yet: healthy

    run_bridge_with_faults(tmp_path, ",".join(FAULTS))
    data = report(tmp_path)
    classes = by_boundary(data)
    assert set(classes) == set(FAULTS), data
    for boundary, klass in classes.items():
        assert klass["kind"] == "new" and klass["component"] == "bridge" and klass["occurrences"] == 1
        assert klass["pattern"] == f"RuntimeError: injected fault at {boundary} (PI_SOCKET_FAULT)"
        assert "maybe_fail" in klass["example_stack"]
        assert klass["sources"] == ["pi-socket.jsonl"]
    status = harden(tmp_path, "status")
    assert status.returncode == 1 and "2 new" in status.stdout

    for klass in classes.values():
        record_fixed(tmp_path, klass)
    assert report(tmp_path)["classes"] == []
    status = harden(tmp_path, "status")
    assert status.returncode == 0, status.stdout
    fix_commit = json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[0])["commit"]

    time.sleep(0.01)  # the next occurrence is strictly after the fix's ledger time
    run_bridge_with_faults(tmp_path, "stdin.line")
    data = report(tmp_path)
    [again] = data["classes"]
    assert again["boundary"] == "stdin.line" and again["kind"] == "recurring"
    assert again["occurrences"] == 2 and again["since_fix"] == 1
    assert again["prior_commits"] == [fix_commit]
    text = harden(tmp_path, "report").stdout
    assert "RECURRING" in text and f"git show {fix_commit[:12]}" in text


def test_a_boundary_error_in_the_shim_reaches_the_report_through_the_bridge(tmp_path):
    """The TypeScript shim cannot write files: it sends its boundary errors to the bridge as `log` lines."""
    stack = (
        "TypeError: Cannot read properties of undefined (reading 'id')\n"
        "    at onToolEnd (/opt/ext/src/index.ts:88:21)\n    at Runner.emit (/opt/pi/dist/runner.js:10:5)"
    )
    shim_error = {
        "t": "log",
        "level": "error",
        "msg": "TypeError: Cannot read properties of undefined (reading 'id')",
        "boundary": "pi.tool_execution_end",
        "stack": stack,
        "needsHardening": True,
    }
    run_bridge_with_faults(tmp_path, "", extra_lines=(shim_error, shim_error))
    [klass] = report(tmp_path)["classes"]
    assert (klass["component"], klass["boundary"], klass["occurrences"]) == ("shim", "pi.tool_execution_end", 2)
    assert klass["pattern"] == "TypeError: Cannot read properties of undefined (reading <str>)"
    assert klass["raised_at"] == "/opt/ext/src/index.ts:88 in onToolEnd"


HYPIVISOR_WRITER = """
import sys
from pathlib import Path
from pi_socket import oplog
oplog.configure("hypivisor", filename="hypivisor.jsonl", log_dir=Path(sys.argv[1]))
for port in (40001, 40002, 40003):
    try:
        raise ConnectionRefusedError(f"agent at 127.0.0.1:{port} refused the proxy connection")
    except ConnectionRefusedError as exc:
        oplog.log_boundary_error("proxy.connect", exc, port=port)
oplog.get_logger().info("registry up", port=31415)
"""


def test_hypivisor_errors_are_classed_by_the_same_report(tmp_path):
    """The hypivisor logs through oplog too; three ports, one class, next to the bridge's log."""
    logs = tmp_path / "logs"
    done = subprocess.run(
        [sys.executable, "-c", HYPIVISOR_WRITER, str(logs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    (logs / "pi-socket.jsonl").write_text("not json at all\n")
    data = report(tmp_path)
    [klass] = data["classes"]
    assert (klass["component"], klass["boundary"], klass["occurrences"]) == ("hypivisor", "proxy.connect", 3)
    assert klass["pattern"] == "ConnectionRefusedError: agent at <ip>:<port> refused the proxy connection"
    assert data["logs"]["malformed"] == {str(logs / "pi-socket.jsonl"): 1}
