"""The operational log: one JSON object per line, never a token, never raises, bounded size."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pi_socket import oplog


def run_logging(tmp_path, body: str, env_extra=None) -> subprocess.CompletedProcess:
    """structlog configuration is process-global, so each case runs in its own interpreter."""
    code = "from pi_socket import oplog\n" + textwrap.dedent(body)
    env = {**os.environ, "PI_SOCKET_LOG_DIR": str(tmp_path), **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_line_format_and_levels(tmp_path):
    r = run_logging(
        tmp_path,
        """
        oplog.configure("bridge", filename="t.jsonl", level="info")
        log = oplog.get_logger()
        log.debug("hidden")
        log.info("listening", port=8080)
        log.warning("slow")
        """,
    )
    assert r.returncode == 0, r.stderr
    lines = read_lines(tmp_path / "t.jsonl")
    assert [ln["msg"] for ln in lines] == ["listening", "slow"]
    assert lines[0]["level"] == "info" and lines[0]["component"] == "bridge" and lines[0]["port"] == 8080
    assert lines[1]["level"] == "warn"
    assert lines[0]["ts"].endswith("Z")


def test_tokens_never_logged(tmp_path):
    secret = "s3cr3t-token-value"
    r = run_logging(
        tmp_path,
        f"""
        oplog.configure("hypivisor", filename="t.jsonl")
        oplog.add_secret({secret!r})
        log = oplog.get_logger()
        log.info("connect", url="ws://h/ws?token={secret}", token={secret!r})
        log.info("header", auth="Bearer {secret}", note="value {secret} inside")
        log.info("nested", params={{"Authorization": "Bearer abc", "ok": [1, "{secret}"]}})
        """,
    )
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "t.jsonl").read_text()
    assert secret not in text
    assert "Bearer abc" not in text
    assert len(text.splitlines()) == 3


def test_boundary_error_fields(tmp_path):
    r = run_logging(
        tmp_path,
        """
        oplog.configure("bridge", filename="t.jsonl")
        def explode():
            raise ValueError("bad frame 42")
        try:
            explode()
        except ValueError as exc:
            oplog.log_boundary_error("ws.message", exc, client="c1")
        """,
    )
    assert r.returncode == 0, r.stderr
    (line,) = read_lines(tmp_path / "t.jsonl")
    assert line["needsHardening"] is True
    assert line["boundary"] == "ws.message"
    assert line["error"] == "ValueError: bad frame 42"
    assert "explode" in line["stack"]
    assert line["level"] == "error"


def test_unwritable_directory_is_quiet(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    r = run_logging(
        blocker,
        """
        oplog.configure("bridge", filename="t.jsonl")
        oplog.get_logger().info("goes nowhere")
        print("still alive")
        """,
    )
    assert r.returncode == 0
    assert r.stdout.strip() == "still alive"


def test_rotation_caps_size(tmp_path):
    f = oplog.RotatingJsonlFile(tmp_path / "r.jsonl", max_bytes=1000, backups=2)
    for i in range(200):
        assert f.write_line(json.dumps({"i": i, "pad": "x" * 40}))
    f.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    assert all((tmp_path / n).stat().st_size <= 1000 for n in files)
    newest = read_lines(tmp_path / "r.jsonl")
    assert newest[-1]["i"] == 199


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
def test_disk_full_fails_quietly():
    f = oplog.RotatingJsonlFile(oplog.Path("/dev/full"))
    assert f.write_line("{}") is False
    assert f.failures == 1
    assert f.write_line("{}") is False  # backs off instead of retrying every line
    assert f.failures == 1


def test_the_token_subprotocol_form_is_scrubbed():
    line = oplog.scrub("Sec-WebSocket-Protocol: hypi.v1, hypi-token.dG9rLVpxOCFzZWNyZXQ")
    assert "dG9rLVpx" not in line and "hypi-token.[redacted]" in line
