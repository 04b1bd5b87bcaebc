"""The hardening ledger: validated on every read and write, append-only."""

import datetime as dt
from pathlib import Path

import orjson
import pytest

from pi_socket.harden import ledger
from pi_socket.harden.classify import class_id
from pi_socket.harden.ledger import LedgerEntry, LedgerError

REPO = Path(__file__).resolve().parents[2]
UTC = dt.UTC


def entry_data(**over):
    data = {
        "ts": "2026-11-23T21:00:00.000Z",
        "class_id": class_id("bridge", "client.message", "KeyError: <str>"),
        "error_class": "bridge client.message: KeyError: <str>",
        "boundary": "client.message",
        "component": "bridge",
        "pattern": "KeyError: <str>",
        "occurrences": 3,
        "first_seen": "2026-11-23T20:00:00.000Z",
        "last_seen": "2026-11-23T20:59:00.000Z",
        "status": "fixed",
        "commit": "03b334b0c0ffee00000000000000000000000000",
        "root_cause": "frames without a type key reached the dispatcher",
        "action": "frames are validated by the protocol model before dispatch",
        "files_changed": ["pi_socket/bridge/handlers.py"],
    }
    data.update(over)
    return data


def test_an_entry_survives_a_round_trip_through_a_line():
    entry = ledger.validate_entry(entry_data(supersedes="abcdef1"))
    line = entry.to_line()
    assert "\n" not in line
    assert ledger.parse_lines([line]) == [entry]
    assert orjson.loads(line)["ts"] == "2026-11-23T21:00:00.000Z"


def test_optional_supersedes_is_left_out_when_absent():
    assert "supersedes" not in orjson.loads(ledger.validate_entry(entry_data()).to_line())


def test_append_then_load_keeps_order_and_earlier_lines(tmp_path):
    path = tmp_path / "sub" / "ledger.jsonl"
    first = ledger.validate_entry(entry_data())
    second = ledger.validate_entry(entry_data(status="recurring", ts="2026-11-24T00:00:00Z"))
    ledger.append(path, first)
    before = path.read_text()
    ledger.append(path, second)
    assert path.read_text().startswith(before)
    assert ledger.load(path) == [first, second]


def test_append_repairs_a_missing_final_newline(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(ledger.validate_entry(entry_data()).to_line())  # no trailing newline
    ledger.append(path, ledger.validate_entry(entry_data(status="reverted")))
    assert len(ledger.load(path)) == 2


def test_a_missing_ledger_is_empty(tmp_path):
    assert ledger.load(tmp_path / "nope.jsonl") == []


def test_blank_lines_are_allowed():
    assert len(ledger.parse_lines(["", ledger.validate_entry(entry_data()).to_line(), "  "])) == 1


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"status": "done"}, "status"),
        ({"class_id": "000000000000"}, "does not match"),
        ({"class_id": "XYZ"}, "class_id"),
        ({"commit": "not-a-sha"}, "commit"),
        ({"root_cause": "   "}, "root_cause"),
        ({"action": ""}, "action"),
        ({"occurrences": -1}, "occurrences"),
        ({"ts": "2026-11-23T21:00:00"}, "timezone"),
        ({"first_seen": "2026-11-24T00:00:00Z"}, "first_seen is after last_seen"),
        ({"files_changed": []}, "files_changed"),
        ({"notes": "extra"}, "notes"),
        ({"supersedes": "HEAD~1"}, "supersedes"),
    ],
)
def test_invalid_entries_are_refused_with_a_reason(change, reason):
    with pytest.raises(LedgerError, match=reason):
        ledger.validate_entry(entry_data(**change))


def test_missing_fields_are_named():
    data = entry_data()
    del data["root_cause"]
    with pytest.raises(LedgerError, match="root_cause: Field required"):
        ledger.validate_entry(data)


def test_an_attempt_with_no_files_is_refused_but_a_reverted_entry_may_have_none():
    with pytest.raises(LedgerError):
        ledger.validate_entry(entry_data(status="attempted", files_changed=[]))
    assert ledger.validate_entry(entry_data(status="reverted", files_changed=[])).status == "reverted"


def test_a_bad_line_is_reported_with_its_line_number():
    good = ledger.validate_entry(entry_data()).to_line()
    with pytest.raises(LedgerError, match=r"ledger:2: not JSON"):
        ledger.parse_lines([good, "{oops"])
    with pytest.raises(LedgerError, match=r"ledger:3: status"):
        ledger.parse_lines([good, "", orjson.dumps(entry_data(status="nope")).decode()])


def test_the_committed_ledger_is_valid():
    """The repo's ledger must always load: the skill and `status` depend on it."""
    entries = ledger.load(REPO / "skills" / "harden-pi-socket" / "ledger.jsonl")
    assert all(isinstance(e, LedgerEntry) for e in entries)
