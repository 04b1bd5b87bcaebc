"""The agent port's handshake adapter (specs/protocol.md §1), without sockets.

The rules themselves are tested in test_handshake.py; this is how the bridge reads them off a request."""

from __future__ import annotations

from pi_socket.bridge.config import allowed_origins
from pi_socket.bridge.port_auth import check_request, presented_tokens
from pi_socket.handshake import encode_token_protocol

ORIGINS = allowed_origins("https://pi.example.ts.net")


def check(token="s3cret", authorization=(), protocols=(), path="/", origin=()):
    return check_request(
        token=token,
        allowed_origins=ORIGINS,
        authorization=list(authorization),
        protocols=list(protocols),
        path=path,
        origin=list(origin),
    ).status


def test_token_sources():
    assert check(authorization=["Bearer s3cret"]) == 200
    assert check(protocols=["hypi.v1", encode_token_protocol("s3cret")]) == 200
    assert check(path="/?token=s3cret") == 200
    assert check(path="/?a=1&token=s%33cret") == 200  # url-encoded
    assert check(path="/?token=nope&token=s3cret") == 200  # every query value is a candidate
    assert presented_tokens("Bearer a", ["hypi.v1", encode_token_protocol("b")], "/x?token=c&token=d") == list("abcd")


def test_missing_or_wrong_token_is_401():
    assert check() == 401
    assert check(path="/?token=s3cre") == 401
    assert check(token=None) == 200


def test_origin_rules():
    assert check(token=None, origin=["http://localhost:5180"]) == 200
    assert check(token=None, origin=["http://127.0.0.1:31415"]) == 200
    assert check(token=None, origin=["https://pi.example.ts.net"]) == 200
    assert check(token=None, origin=["http://localhost:5181"]) == 403
    assert check(authorization=["Bearer s3cret"], origin=["https://evil.example"]) == 403


def test_credentials_sent_twice_are_400():
    assert check(authorization=["Bearer s3cret", "Bearer s3cret"]) == 400
    assert check(token=None, origin=["http://localhost:5180", "http://localhost:5180"]) == 400
