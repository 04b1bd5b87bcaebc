"""Error classes: what counts as "the same bug" for the hardening loop."""

import datetime as dt

import pytest

from pi_socket.harden.classify import (
    ErrorClass,
    MalformedRecord,
    class_id,
    group,
    normalise,
    occurrence_from_record,
)


def _line(error, boundary="ws.message", component="bridge", ts="2026-11-23T20:41:07.123Z", **extra):
    return {
        "ts": ts,
        "level": "error",
        "component": component,
        "msg": "unhandled error at boundary",
        "needsHardening": True,
        "boundary": boundary,
        "error": error,
        "stack": "Traceback ...",
        **extra,
    }


def _class(record):
    occ = occurrence_from_record(record)
    assert occ is not None
    return occ.error_class


SAME_CLASS_PAIRS = [
    pytest.param("KeyError: 'node-3f2a91'", "KeyError: 'mac-77'", id="quoted ids"),
    pytest.param(
        "OSError: [Errno 98] address already in use: 127.0.0.1:8080",
        "OSError: [Errno 98] address already in use: 127.0.0.1:31415",
        id="ports",
    ),
    pytest.param(
        "ValueError: session 550e8400-e29b-41d4-a716-446655440000 unknown",
        "ValueError: session 123e4567-e89b-12d3-a456-426614174000 unknown",
        id="uuids",
    ),
    pytest.param(
        "FileNotFoundError: [Errno 2] No such file: /home/ann/.pi/agent/sessions/a.jsonl",
        "FileNotFoundError: [Errno 2] No such file: /tmp/pytest-7/sessions/b.jsonl",
        id="paths",
    ),
    pytest.param(
        "RuntimeError: frame 12 too large (70000 bytes)", "RuntimeError: frame 3 too large (65537 bytes)", id="numbers"
    ),
    pytest.param(
        "RuntimeError: <Task at 0x7f3a2b1c0d90> destroyed",
        "RuntimeError: <Task at 0x55d0aa> destroyed",
        id="hex addresses",
    ),
    pytest.param(
        "TimeoutError: no pong from ws://127.0.0.1:9/ws?token=x after 3000ms",
        "TimeoutError: no pong from ws://[::1]:4000/ws after 15ms",
        id="urls and durations",
    ),
    pytest.param("LookupError: client c7f3a9b2e1 gone", "LookupError: client 0a1b2c3d4e gone", id="hex ids"),
    pytest.param("LookupError: node node-a1b2c3 gone", "LookupError: node node-9z8y7x gone", id="mixed ids"),
    pytest.param("ValueError:   bad\n  frame", "ValueError: bad frame", id="whitespace"),
]


@pytest.mark.parametrize("first,second", SAME_CLASS_PAIRS)
def test_messages_differing_only_in_varying_parts_share_a_class(first, second):
    assert normalise(first) == normalise(second)
    assert _class(_line(first)).id == _class(_line(second)).id


def test_the_pattern_keeps_the_exception_type_and_the_wording():
    assert normalise("KeyError: 'node-3f2a91'") == "KeyError: <str>"
    assert normalise("OSError: address in use: 127.0.0.1:8080") == "OSError: address in use: <ip>:<port>"
    assert normalise("TypeError: can't concat str to bytes") == "TypeError: can't concat str to bytes"


def test_different_wording_or_type_is_a_different_class():
    assert _class(_line("KeyError: 'x'")).id != _class(_line("IndexError: 'x'")).id
    assert _class(_line("ValueError: bad frame")).id != _class(_line("ValueError: bad header")).id


def test_same_message_at_different_boundaries_is_a_different_class():
    """A different boundary is a different callback, so a different fix."""
    a = _class(_line("KeyError: 'type'", boundary="client.message"))
    b = _class(_line("KeyError: 'type'", boundary="stdin.line"))
    assert a.pattern == b.pattern
    assert a.id != b.id


def test_same_message_in_different_components_is_a_different_class():
    assert (
        _class(_line("KeyError: 'x'", component="bridge")).id
        != _class(_line("KeyError: 'x'", component="hypivisor")).id
    )


def test_class_id_is_short_stable_and_pinned():
    """Pinned: changing the hash would orphan every ledger entry ever written."""
    cid = class_id("bridge", "ws.message", "KeyError: <str>")
    assert cid == ErrorClass("bridge", "ws.message", "KeyError: <str>").id
    assert len(cid) == 12 and int(cid, 16) >= 0
    assert cid == "4d3448b85a9d"


def test_very_long_messages_are_capped():
    assert len(normalise("E: " + "word " * 500)) <= 240


def test_ordinary_lines_are_not_occurrences():
    assert occurrence_from_record({"ts": "2026-11-23T20:41:07Z", "level": "info", "msg": "listening"}) is None
    assert occurrence_from_record({**_line("x"), "needsHardening": "true"}) is None  # only a real true counts


@pytest.mark.parametrize("record", [[1, 2], "text", 3, None])
def test_a_line_that_is_not_an_object_is_malformed(record):
    with pytest.raises(MalformedRecord):
        occurrence_from_record(record)


@pytest.mark.parametrize("ts", [None, 17, "yesterday", ""])
def test_a_hardening_line_without_a_usable_time_is_malformed(ts):
    with pytest.raises(MalformedRecord):
        occurrence_from_record(_line("KeyError: 'x'", ts=ts))


def test_missing_fields_fall_back_instead_of_failing():
    record = {"ts": "2026-11-23T20:41:07", "needsHardening": True, "msg": "WSS server error port 8080"}
    occ = occurrence_from_record(record, source="hypivisor.jsonl")
    assert occ.error_class == ErrorClass("unknown", "unknown", "WSS server error port <port>")
    assert occ.ts.tzinfo is not None and occ.stack == "" and occ.source == "hypivisor.jsonl"


def test_group_counts_orders_by_frequency_and_tracks_first_and_last_seen():
    lines = [
        _line("KeyError: 'a'", ts="2026-11-23T10:00:03Z"),
        _line("OSError: port 1", boundary="server.start", ts="2026-11-23T10:00:02Z"),
        _line("KeyError: 'b'", ts="2026-11-23T10:00:01Z"),
    ]
    summaries = group(occurrence_from_record(r) for r in lines)
    assert [s.count for s in summaries] == [2, 1]
    top = summaries[0]
    assert top.first_seen == dt.datetime(2026, 11, 23, 10, 0, 1, tzinfo=dt.UTC)
    assert top.last_seen == dt.datetime(2026, 11, 23, 10, 0, 3, tzinfo=dt.UTC)
    assert top.latest.error == "KeyError: 'a'"
    assert top.count_after(top.first_seen) == 1
