"""Token and Origin decisions (specs/protocol.md §1)."""

from __future__ import annotations

import pytest

from hypivisor import auth

ALLOWED = auth.default_origins({"box"}, {31415, 5181}) | {"https://pi.example.ts.net"}


def headers(**h):
    lower = {k.replace("_", "-").lower(): v for k, v in h.items()}
    return lower.get


def decide(token="s3cret", query=None, **h):
    return auth.check(headers(**h), query, token, ALLOWED)


def test_no_expected_token_allows_anything_without_origin():
    assert auth.check(headers(), None, None, ALLOWED).allowed


def test_missing_or_wrong_token_is_401():
    assert decide().status == 401
    assert decide(authorization="Bearer nope").status == 401
    assert decide(query="nope").status == 401


@pytest.mark.parametrize(
    "how",
    [dict(authorization="Bearer s3cret"), dict(authorization="bearer s3cret"), dict(query="s3cret"),
     dict(sec_websocket_protocol="hypi.v1, " + auth.encode_protocol_token("s3cret"))],
)  # fmt: skip
def test_token_accepted_from_header_subprotocol_or_query(how):
    assert decide(**how).allowed


def test_subprotocol_roundtrip_for_non_ascii_and_garbage():
    tok = "pässwörd+/="
    proto = auth.encode_protocol_token(tok)
    assert "=" not in proto and auth.presented_tokens(headers(sec_websocket_protocol=proto), None) == [tok]
    assert auth.presented_tokens(headers(sec_websocket_protocol="hypi-token.!!!"), None) == []


def test_cross_site_origin_is_403_even_with_the_right_token():
    d = decide(origin="https://evil.example", authorization="Bearer s3cret")
    assert d.status == 403 and "evil.example" in d.message


@pytest.mark.parametrize(
    "origin", ["http://localhost:5181", "http://127.0.0.1:31415", "http://[::1]:5180", "http://box:5180",
               "https://pi.example.ts.net", "https://pi.example.ts.net/"],
)  # fmt: skip
def test_own_dev_and_configured_origins_are_allowed(origin):
    assert decide(origin=origin, authorization="Bearer s3cret").allowed


@pytest.mark.parametrize("origin", ["null", "http://localhost:9999", "http://localhost.evil:5180", "file://"])
def test_other_origins_are_refused(origin):
    assert decide(origin=origin, authorization="Bearer s3cret").status == 403


def test_parse_allowed_origins():
    assert auth.parse_allowed_origins(" https://a.b/ , ,http://c:1") == {"https://a.b", "http://c:1"}
    assert auth.parse_allowed_origins(None) == set()


def test_loopback_detection():
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("192.168.1.2")


def test_without_a_token_only_this_machine_may_drive_agents_through_the_proxy():
    from hypivisor.auth import remote_without_token

    for local in ("127.0.0.1", "127.5.0.1", "::1", "::ffff:127.0.0.1"):
        assert remote_without_token(None, local, False).allowed, local
    for remote in ("192.168.1.20", "100.64.0.7", "fe80::1%eth0", "::ffff:10.0.0.1", None, "garbage"):
        decision = remote_without_token(None, remote, False)
        assert decision.status == 403 and "HYPI_TOKEN" in decision.message, remote
    assert remote_without_token("tok", "192.168.1.20", False).allowed  # the token check already ran
    assert remote_without_token(None, "192.168.1.20", True).allowed  # explicit operator opt-in


def test_remote_flag_is_parsed():
    from hypivisor.config import parse

    assert parse([], {}).allow_unauthenticated_remote is False
    assert parse(["--allow-unauthenticated-remote"], {}).allow_unauthenticated_remote is True
