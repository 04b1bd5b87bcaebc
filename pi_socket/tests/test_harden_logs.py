"""Reading the operational logs: rotations included, malformed lines skipped and counted, missing files fine."""

import orjson

from pi_socket.harden.logs import default_logs, generations, read_logs
from pi_socket.oplog import RotatingJsonlFile


def hardening_line(error="KeyError: 'x'", ts="2026-11-23T20:00:00.000Z", boundary="client.message"):
    return orjson.dumps(
        {
            "ts": ts,
            "level": "error",
            "component": "bridge",
            "msg": "unhandled error at boundary",
            "needsHardening": True,
            "boundary": boundary,
            "error": error,
            "stack": "tb",
        }
    ).decode()


INFO = '{"ts":"2026-11-23T20:00:00.000Z","level":"info","component":"bridge","msg":"listening","port":8080}'


def test_malformed_lines_are_skipped_counted_and_never_fatal(tmp_path):
    log = tmp_path / "pi-socket.jsonl"
    log.write_text(
        "\n".join(
            [
                INFO,
                "{truncated by a crash",
                hardening_line(),
                "[1, 2]",
                '"just a string"',
                hardening_line(ts="not a time"),
                "",
                hardening_line(error="KeyError: 'y'"),
            ]
        )
        + "\n"
        + '{"ts": "2026-11-23T20:00:01Z", "needsHard'
    )  # partial last line
    occurrences, scan = read_logs([log])
    assert [o.error for o in occurrences] == ["KeyError: 'x'", "KeyError: 'y'"]
    assert scan.malformed == {str(log): 5}
    assert scan.malformed_total == 5
    assert scan.lines == 8


def test_invalid_utf8_is_malformed_not_a_crash(tmp_path):
    log = tmp_path / "pi-socket.jsonl"
    log.write_bytes(b'{"msg": "\xff\xfe"}\n' + hardening_line().encode() + b"\n")
    occurrences, scan = read_logs([log])
    assert len(occurrences) == 1 and scan.malformed_total == 1


def test_missing_logs_are_fine_and_listed(tmp_path):
    occurrences, scan = read_logs([tmp_path / "pi-socket.jsonl", tmp_path / "nowhere" / "hypivisor.jsonl"])
    assert occurrences == []
    assert scan.read == [] and len(scan.missing) == 2 and scan.malformed_total == 0


def test_rotated_generations_written_by_oplog_are_read_oldest_first(tmp_path):
    log = tmp_path / "pi-socket.jsonl"
    writer = RotatingJsonlFile(log, max_bytes=len(hardening_line()) + 2, backups=3)
    for minute in range(4):  # every line fills a file, so four files: .3 .2 .1 and the live one
        writer.write_line(hardening_line(ts=f"2026-11-23T20:0{minute}:00.000Z"))
    writer.close()
    files = generations(log)
    assert [f.name for f in files] == ["pi-socket.jsonl.3", "pi-socket.jsonl.2", "pi-socket.jsonl.1", "pi-socket.jsonl"]
    occurrences, scan = read_logs([log])
    assert [o.ts.minute for o in occurrences] == [0, 1, 2, 3]
    assert len(scan.read) == 4


def test_only_numbered_generations_count_as_rotations(tmp_path):
    log = tmp_path / "pi-socket.jsonl"
    for name in ("pi-socket.jsonl.bak", "pi-socket.jsonl.1.gz", "pi-socket.jsonl.12", "other.jsonl.1"):
        (tmp_path / name).write_text(hardening_line() + "\n")
    assert [f.name for f in generations(log)] == ["pi-socket.jsonl.12"]


def test_a_rotated_file_is_read_even_when_the_live_file_is_gone(tmp_path):
    (tmp_path / "hypivisor.jsonl.1").write_text(hardening_line() + "\n")
    occurrences, scan = read_logs([tmp_path / "hypivisor.jsonl"])
    assert len(occurrences) == 1
    assert scan.missing == [str(tmp_path / "hypivisor.jsonl")]


def test_default_logs_are_the_bridge_and_hypivisor_files_in_the_oplog_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PI_SOCKET_LOG_DIR", str(tmp_path))
    assert default_logs() == [tmp_path / "pi-socket.jsonl", tmp_path / "hypivisor.jsonl"]
    assert default_logs(tmp_path / "x") == [tmp_path / "x" / "pi-socket.jsonl", tmp_path / "x" / "hypivisor.jsonl"]
