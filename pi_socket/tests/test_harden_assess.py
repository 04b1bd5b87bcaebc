"""Which error classes still need work: new, recurring after a fix, open attempts, or resolved."""

import datetime as dt

from pi_socket.harden import ledger
from pi_socket.harden.assess import assess
from pi_socket.harden.classify import ErrorClass, Occurrence, group

UTC = dt.UTC
KEY_ERROR = ErrorClass("bridge", "client.message", "KeyError: <str>")
OS_ERROR = ErrorClass("hypivisor", "proxy.connect", "OSError: <ip>:<port>")


def at(hour, minute=0):
    return dt.datetime(2026, 11, 23, hour, minute, tzinfo=UTC)


def occ(klass, when):
    return Occurrence(ts=when, error_class=klass, error=klass.pattern, stack="", source="pi-socket.jsonl")


def entry(klass, status, when, commit="a" * 40, **over):
    data = {
        "ts": when,
        "class_id": klass.id,
        "error_class": klass.label,
        "boundary": klass.boundary,
        "component": klass.component,
        "pattern": klass.pattern,
        "occurrences": 1,
        "first_seen": at(1),
        "last_seen": at(1),
        "status": status,
        "commit": commit,
        "root_cause": "rc",
        "action": "act",
        "files_changed": ["x.py"],
    }
    data.update(over)
    return ledger.validate_entry(data)


def kinds(occurrences, entries):
    result = assess(group(occurrences), entries)
    return {f.summary.error_class.id: f.kind for f in result.findings}, result


def test_a_class_never_in_the_ledger_is_new_and_unhealthy():
    found, result = kinds([occ(KEY_ERROR, at(10))], [])
    assert found == {KEY_ERROR.id: "new"}
    assert not result.healthy


def test_no_errors_at_all_is_healthy():
    _, result = kinds([], [])
    assert result.healthy and result.findings == ()


def test_a_fixed_class_with_no_later_occurrence_is_resolved_and_healthy():
    found, result = kinds([occ(KEY_ERROR, at(10))], [entry(KEY_ERROR, "fixed", at(11))])
    assert found == {KEY_ERROR.id: "resolved"}
    assert result.healthy
    assert result.unprocessed == ()


def test_an_occurrence_after_the_fix_makes_the_class_recurring_with_the_fix_commit():
    fix = entry(KEY_ERROR, "fixed", at(11), commit="b" * 40)
    found, result = kinds([occ(KEY_ERROR, at(10)), occ(KEY_ERROR, at(12)), occ(KEY_ERROR, at(13))], [fix])
    assert found == {KEY_ERROR.id: "recurring"}
    finding = result.unprocessed[0]
    assert finding.since_fix == 2 and finding.summary.count == 3
    assert finding.prior_commits == ("b" * 40,)
    assert not result.healthy


def test_an_occurrence_at_exactly_the_fix_time_is_not_a_recurrence():
    _, result = kinds([occ(KEY_ERROR, at(11))], [entry(KEY_ERROR, "fixed", at(11))])
    assert result.healthy


def test_attempted_and_reverted_classes_stay_open_even_when_quiet():
    for status in ("attempted", "reverted"):
        found, result = kinds([occ(KEY_ERROR, at(10))], [entry(KEY_ERROR, status, at(11))])
        assert found == {KEY_ERROR.id: "open"}, status
        assert not result.healthy


def test_a_class_marked_recurring_stays_unprocessed_until_fixed_again():
    first_fix = entry(KEY_ERROR, "fixed", at(11), commit="1" * 40)
    marked = entry(KEY_ERROR, "recurring", at(13), commit="1" * 40)
    occurrences = [occ(KEY_ERROR, at(10)), occ(KEY_ERROR, at(12))]
    found, result = kinds(occurrences, [first_fix, marked])
    assert found == {KEY_ERROR.id: "recurring"}
    assert result.unprocessed[0].since_fix == 1

    deeper = entry(KEY_ERROR, "fixed", at(14), commit="2" * 40, supersedes="1" * 40)
    found, result = kinds(occurrences, [first_fix, marked, deeper])
    assert found == {KEY_ERROR.id: "resolved"}
    assert result.findings[0].prior_commits == ("2" * 40, "1" * 40)


def test_the_latest_entry_decides_regardless_of_file_order():
    fix = entry(KEY_ERROR, "fixed", at(12))
    older_attempt = entry(KEY_ERROR, "attempted", at(11))
    found, _ = kinds([occ(KEY_ERROR, at(10))], [fix, older_attempt])
    assert found == {KEY_ERROR.id: "resolved"}


def test_classes_are_judged_independently_and_listed_unprocessed_first():
    occurrences = [occ(KEY_ERROR, at(10)), occ(KEY_ERROR, at(10, 5)), occ(OS_ERROR, at(10))]
    found, result = kinds(occurrences, [entry(KEY_ERROR, "fixed", at(11))])
    assert found == {KEY_ERROR.id: "resolved", OS_ERROR.id: "new"}
    assert [f.kind for f in result.findings] == ["new", "resolved"]
    assert result.count("new") == 1 and result.count("resolved") == 1


def test_ledger_classes_absent_from_the_logs_are_listed_but_do_not_count():
    gone = ErrorClass("bridge", "stdin.line", "ValueError: <str>")
    _, result = kinds([], [entry(gone, "attempted", at(9))])
    assert result.healthy
    assert result.ledger_only == (gone.id,)
