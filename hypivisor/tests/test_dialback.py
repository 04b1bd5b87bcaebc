"""The dial-back nonce book (hypivisor/dialback.py): once, in time, only what was issued, bounded."""

from __future__ import annotations

import pytest

from hypivisor import dialback
from hypivisor.dialback import DialBackBook, Pending, Refused


def test_a_nonce_is_128_random_bits_and_good_once() -> None:
    book = DialBackBook(ttl=5)
    nonce = book.issue("n1", 100.0, payload="link")
    assert nonce is not None and len(nonce) >= 22  # token_urlsafe(16): 128 bits
    assert book.issue("n1", 100.0) != nonce
    got = book.claim(nonce, 101.0)
    assert isinstance(got, Pending) and got.node_id == "n1" and got.payload == "link"
    again = book.claim(nonce, 101.5)
    assert isinstance(again, Refused) and again.reason == "used" and again.status == 410 and again.node_id == "n1"


def test_an_expired_nonce_is_refused_as_expired_whether_swept_or_not() -> None:
    book = DialBackBook(ttl=5)
    late = book.issue("n1", 0.0)
    swept = book.issue("n2", 0.0)
    assert late and swept
    assert [p.node_id for p in book.sweep(5.0)] == ["n1", "n2"]
    for nonce in (late, swept):
        got = book.claim(nonce, 5.0)
        assert isinstance(got, Refused) and got.reason == "expired" and got.status == 410
    unswept = book.issue("n3", 10.0)
    assert unswept
    got = book.claim(unswept, 15.0)  # exactly at expiry: too late
    assert isinstance(got, Refused) and got.reason == "expired"
    assert isinstance(book.claim(unswept, 15.0), Refused)


def test_a_forged_nonce_is_unknown_and_consumes_nothing() -> None:
    book = DialBackBook()
    real = book.issue("n1", 0.0)
    assert real
    for forged in ("", "x", real[:-1], real + "A", real.upper() if real.upper() != real else real.lower()):
        got = book.claim(forged, 1.0)
        assert isinstance(got, Refused) and got.reason == "unknown" and got.status == 404
    assert isinstance(book.claim(real, 1.0), Pending)  # the real one still works after the forgeries


def test_a_cancelled_link_refuses_its_late_dial_back() -> None:
    book = DialBackBook()
    nonce = book.issue("n1", 0.0)
    assert nonce and book.cancel(nonce, 1.0) is not None
    assert book.cancel(nonce, 1.0) is None
    got = book.claim(nonce, 1.5)
    assert isinstance(got, Refused) and got.reason == "used"
    timed_out = book.issue("n2", 0.0)
    assert timed_out and book.cancel(timed_out, book.ttl) is not None  # the link gave up at expiry
    got = book.claim(timed_out, book.ttl + 0.1)
    assert isinstance(got, Refused) and got.reason == "expired"


def test_bounded_pending_and_spent() -> None:
    book = DialBackBook(max_pending=3, max_spent=2)
    nonces = [book.issue(f"n{i}", 0.0) for i in range(3)]
    assert all(nonces) and len(book) == 3
    assert book.issue("n9", 0.0) is None  # full: the caller connects directly
    for nonce in nonces:
        assert isinstance(book.claim(nonce, 1.0), Pending)
    assert len(book) == 0 and book.issue("n9", 1.0)
    # only the last two spent nonces are remembered; the oldest is forgotten, and still refused
    first = book.claim(nonces[0], 2.0)
    assert isinstance(first, Refused) and first.reason == "unknown"
    last = book.claim(nonces[2], 2.0)
    assert isinstance(last, Refused) and last.reason == "used"


def test_the_ttl_is_at_most_ten_seconds() -> None:
    assert dialback.DIAL_BACK_TTL <= dialback.MAX_TTL == 10.0
    with pytest.raises(ValueError):
        DialBackBook(ttl=11)
    with pytest.raises(ValueError):
        DialBackBook(ttl=0)


def test_nonces_are_stored_hashed() -> None:
    book = DialBackBook()
    nonce = book.issue("n1", 0.0)
    assert nonce
    stored = repr(book.__dict__)
    assert nonce not in stored


def test_paths_and_the_answer() -> None:
    assert dialback.nonce_of("/ws/dialback/abc") == "abc"
    assert dialback.nonce_of("/ws/dialback/") == ""
    assert dialback.nonce_of("/ws/dialback/a/b") == ""
    assert dialback.nonce_of("/ws/dialback/" + "a" * 129) == ""
    assert dialback.nonce_of("/ws/agent/x") is None and dialback.nonce_of("/ws") is None
    assert dialback.dial_path("abc") == "/ws/dialback/abc"
    answer = dialback.switching_response()
    assert answer.startswith(b"HTTP/1.1 101 ") and b"Upgrade: hypi-dialback" in answer and answer.endswith(b"\r\n\r\n")
