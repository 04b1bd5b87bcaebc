"""`python -m pi_socket.harden report|record|status`: the contract the skill relies on."""

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pi_socket.harden import cli, ledger

REPO = Path(__file__).resolve().parents[2]


def hardening_line(
    error="KeyError: 'node-1234'", ts="2026-11-23T20:00:00.000Z", boundary="client.message", component="bridge"
):
    return orjson.dumps(
        {
            "ts": ts,
            "level": "error",
            "component": component,
            "msg": "unhandled error at boundary",
            "needsHardening": True,
            "boundary": boundary,
            "error": error,
            "stack": 'Traceback (most recent call last):\n  File "h.py", line 3, in on_message\n' + error,
        }
    ).decode()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A log dir with one bridge and one hypivisor class, and an empty ledger chosen via HARDEN_LEDGER."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pi-socket.jsonl").write_text(
        "\n".join(
            [
                hardening_line(),
                hardening_line(error="KeyError: 'node-98'", ts="2026-11-23T20:05:00.000Z"),
                "{bad",
            ]
        )
        + "\n"
    )
    (logs / "hypivisor.jsonl").write_text(
        hardening_line(
            error="OSError: connect to 127.0.0.1:4242 failed", boundary="proxy.connect", component="hypivisor"
        )
        + "\n"
    )
    monkeypatch.setenv("PI_SOCKET_LOG_DIR", str(logs))
    monkeypatch.setenv("HARDEN_LEDGER", str(tmp_path / "ledger.jsonl"))
    return tmp_path


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def report(capsys):
    code, out, _ = run(capsys, "report", "--json")
    assert code == 0
    return orjson.loads(out)


def test_report_covers_both_logs_with_counts_times_stack_and_malformed_lines(env, capsys):
    data = report(capsys)
    assert data["healthy"] is False
    assert data["counts"] == {"new": 2, "recurring": 0, "open": 0, "resolved": 0}
    bridge, hypivisor = data["classes"]
    assert (bridge["component"], bridge["boundary"], bridge["occurrences"]) == ("bridge", "client.message", 2)
    assert bridge["first_seen"] == "2026-11-23T20:00:00.000Z" and bridge["last_seen"] == "2026-11-23T20:05:00.000Z"
    assert bridge["example_error"] == "KeyError: 'node-98'" and "on_message" in bridge["example_stack"]
    assert bridge["raised_at"] == "h.py:3 in on_message"
    assert hypivisor["component"] == "hypivisor" and hypivisor["sources"] == ["hypivisor.jsonl"]
    assert data["logs"]["malformed_total"] == 1


def test_report_text_is_readable(env, capsys):
    code, out, _ = run(capsys, "report")
    assert code == 0
    assert out.startswith("NOT healthy: 2 unprocessed error class(es): 2 new")
    assert "malformed lines skipped: 1" in out
    assert "NEW" in out and "bridge / client.message  x2" in out and "KeyError: <str>" in out
    assert 'File "h.py", line 3, in on_message' in out


def test_status_exit_code_follows_health(env, capsys):
    code, out, _ = run(capsys, "status")
    assert code == 1 and "NOT healthy" in out and "/skill:harden-pi-socket" in out
    for klass in report(capsys)["classes"]:
        assert (
            run(
                capsys,
                "record",
                "--class-id",
                klass["class_id"],
                "--status",
                "fixed",
                "--root-cause",
                "rc",
                "--action",
                "act",
                "--files",
                "x.py",
            )[0]
            == 0
        )
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0 and orjson.loads(out)["healthy"] is True


def head():
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_record_defaults_the_commit_to_head_of_the_repo(env, capsys):
    class_id = report(capsys)["classes"][0]["class_id"]
    before = head()  # others commit in this checkout concurrently: HEAD may move during the test
    code, out, err = run(
        capsys,
        "record",
        "--class-id",
        class_id,
        "--status",
        "attempted",
        "--root-cause",
        "frames without a type",
        "--action",
        "validate frames",
        "--files",
        "a.py",
        "b.py",
        "--json",
    )
    assert code == 0, err
    written = orjson.loads(out)
    assert written["commit"] in {before, head()}
    assert written["occurrences"] == 2 and written["files_changed"] == ["a.py", "b.py"]
    [entry] = ledger.load(env / "ledger.jsonl")
    assert entry.class_id == class_id and entry.status == "attempted"
    kinds = {c["class_id"]: c["kind"] for c in report(capsys)["classes"]}
    assert kinds[class_id] == "open"  # an attempt is not a fix


def test_record_accepts_a_short_commit_and_stores_the_full_sha(env, capsys):
    sha = head()
    class_id = report(capsys)["classes"][0]["class_id"]
    code, _, err = run(
        capsys,
        "record",
        "--class-id",
        class_id,
        "--status",
        "fixed",
        "--root-cause",
        "rc",
        "--action",
        "a",
        "--files",
        "x.py",
        "--commit",
        sha[:9],
        "--supersedes",
        sha[:8],
    )
    assert code == 0, err
    [entry] = ledger.load(env / "ledger.jsonl")
    assert entry.commit == sha and entry.supersedes == sha


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--class-id", "ffffffffffff"], "neither the logs read nor the ledger"),
        (["--commit", "0123456789abcdef0123"], "no commit"),
        (["--root-cause", " "], "root_cause"),
        (["--files"], None),  # argparse: --files needs at least one path
    ],
)
def test_record_refuses_invalid_input_and_writes_nothing(env, capsys, argv, message):
    class_id = report(capsys)["classes"][0]["class_id"]
    base = {"--class-id": class_id, "--status": "fixed", "--root-cause": "rc", "--action": "a"}
    args = ["record"]
    for key, value in base.items():
        if key not in argv:
            args += [key, value]
    args += argv + (["--files", "x.py"] if "--files" not in argv else [])
    if message is None:
        with pytest.raises(SystemExit) as exc:
            cli.main(args)
        assert exc.value.code == 2
    else:
        code, _, err = run(capsys, *args)
        assert code == 2 and err.startswith("error: ") and message in err
    assert not (env / "ledger.jsonl").exists()


def test_record_refuses_an_unknown_status(env, capsys):
    with pytest.raises(SystemExit):
        cli.main(["record", "--class-id", "x", "--status", "done", "--root-cause", "r", "--action", "a"])
    assert "invalid choice: 'done'" in capsys.readouterr().err


def test_recording_the_same_thing_twice_is_refused(env, capsys):
    class_id = report(capsys)["classes"][0]["class_id"]
    args = ["record", "--class-id", class_id, "--status", "fixed", "--root-cause", "r", "--action", "a", "--files", "x"]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 2 and "already recorded" in err
    assert len(ledger.load(env / "ledger.jsonl")) == 1
    # a new finding about the same commit (e.g. the recurrence came from a pre-fix process) is not a duplicate
    args[args.index("--root-cause") + 1] = "occurrence came from a bridge started before the fix"
    assert run(capsys, *args)[0] == 0
    assert len(ledger.load(env / "ledger.jsonl")) == 2


def test_a_class_gone_from_the_logs_can_still_be_recorded_from_its_ledger_history(env, capsys, tmp_path):
    class_id = report(capsys)["classes"][0]["class_id"]
    run(
        capsys,
        "record",
        "--class-id",
        class_id,
        "--status",
        "fixed",
        "--root-cause",
        "r",
        "--action",
        "a",
        "--files",
        "x",
    )
    empty = tmp_path / "empty-logs"
    code, _, err = run(
        capsys,
        "record",
        "--log-dir",
        str(empty),
        "--class-id",
        class_id,
        "--status",
        "reverted",
        "--root-cause",
        "the fix broke resume",
        "--action",
        "git revert",
    )
    assert code == 0, err
    assert [e.status for e in ledger.load(env / "ledger.jsonl")] == ["fixed", "reverted"]


def test_a_corrupt_ledger_is_an_error_with_its_line_number(env, capsys):
    (env / "ledger.jsonl").write_text('{"ts": 1}\n')
    code, _, err = run(capsys, "status")
    assert code == 2 and "ledger.jsonl:1:" in err


def test_explicit_log_and_ledger_options_override_the_defaults(env, capsys, tmp_path):
    only = tmp_path / "only.jsonl"
    only.write_text(hardening_line(boundary="stdin.line") + "\n")
    code, out, _ = run(capsys, "report", "--json", "--log", str(only), "--ledger", str(tmp_path / "other.jsonl"))
    data = orjson.loads(out)
    assert [c["boundary"] for c in data["classes"]] == ["stdin.line"]
    assert data["ledger"] == str(tmp_path / "other.jsonl")


def test_module_entry_point_runs_and_healthy_status_exits_zero(tmp_path):
    """The skill calls exactly this command line; with no logs at all the system is healthy."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pi_socket.harden",
            "status",
            "--log-dir",
            str(tmp_path),
            "--ledger",
            str(tmp_path / "l.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("healthy")


def test_raised_at_names_the_innermost_frame_of_python_and_javascript_stacks():
    from pi_socket.harden.render import raised_at

    py = 'Traceback (most recent call last):\n  File "a.py", line 1, in outer\n  File "b.py", line 7, in inner\nKeyError: 1'
    js = (
        "TypeError: x is undefined\n    at onMessage (/ext/src/index.ts:42:13)\n    at Socket.emit (node:events:519:28)"
    )
    assert raised_at(py) == "b.py:7 in inner"
    assert raised_at(js) == "/ext/src/index.ts:42 in onMessage"
    assert raised_at("no frames here") == ""
