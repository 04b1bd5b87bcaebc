"""Token and Origin rules for the agent port (specs/protocol.md §1), without sockets."""

from __future__ import annotations

import base64
from http import HTTPStatus

from pi_socket.bridge.auth import check_handshake, select_protocol, split_protocols
from pi_socket.bridge.config import allowed_origins

ORIGINS = allowed_origins("https://pi.example.ts.net")


def proto(token: str) -> str:
    return "hypi-token." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def check(token="s3cret", authorization=None, protocols=(), path="/", origin=None):
    return check_handshake(token=token, allowed_origins=ORIGINS, authorization=authorization,
                           protocols=list(protocols), path=path, origin=origin).status


def test_token_sources():
    assert check(authorization="Bearer s3cret") is None
    assert check(authorization="bearer s3cret") is None
    assert check(protocols=["hypi.v1", proto("s3cret")]) is None
    assert check(path="/?token=s3cret") is None
    assert check(path="/?a=1&token=s%33cret") is None  # url-encoded


def test_missing_or_wrong_token_is_401():
    assert check() == HTTPStatus.UNAUTHORIZED
    assert check(authorization="Bearer nope") == HTTPStatus.UNAUTHORIZED
    assert check(authorization="Basic s3cret") == HTTPStatus.UNAUTHORIZED
    assert check(protocols=["hypi-token.!!!"]) == HTTPStatus.UNAUTHORIZED
    assert check(path="/?token=s3cre") == HTTPStatus.UNAUTHORIZED


def test_no_token_configured_allows_any():
    assert check(token=None) is None


def test_origin_rules():
    assert check(token=None, origin="http://localhost:5180") is None
    assert check(token=None, origin="http://127.0.0.1:31415") is None
    assert check(token=None, origin="http://[::1]:5180") is None
    assert check(token=None, origin="https://pi.example.ts.net") is None
    assert check(token=None, origin="https://evil.example") == HTTPStatus.FORBIDDEN
    assert check(token=None, origin="http://localhost:5181") == HTTPStatus.FORBIDDEN
    assert check(token=None, origin="null") == HTTPStatus.FORBIDDEN
    # a foreign page is refused even with the right token
    assert check(authorization="Bearer s3cret", origin="https://evil.example") == HTTPStatus.FORBIDDEN


def test_subprotocol_selection_never_echoes_the_token():
    assert select_protocol(["hypi.v1", proto("x")]) == "hypi.v1"
    assert select_protocol([proto("x")]) is None
    assert split_protocols(["hypi.v1, hypi-token.abc", "other"]) == ["hypi.v1", "hypi-token.abc", "other"]
