"""The hypivisor's handshake adapter and its own remote policy (specs/protocol.md §1)."""

from __future__ import annotations

from hypivisor import access

ALLOWED = access.default_origins({"box"}, {31415, 5181}) | {"https://pi.example.ts.net"}


def headers(**h):
    lower = {k.replace("_", "-").lower(): v for k, v in h.items()}
    return lower.get


def decide(token="s3cret", query=None, **h):
    return access.check(headers(**h), query, token, ALLOWED)


def test_check_reads_every_carrier_through_the_header_getter():
    """The rules themselves are tested in pi_socket/tests/test_handshake.py; this is the adapter."""
    assert access.check(headers(), None, None, ALLOWED).allowed
    assert decide().status == 401 and decide(query="nope").status == 401
    for how in (
        dict(authorization="bearer s3cret"),
        dict(query="s3cret"),
        dict(sec_websocket_protocol="hypi.v1, " + access.encode_protocol_token("s3cret")),
    ):
        assert decide(**how).allowed, how
    assert access.presented_tokens(
        headers(authorization="Bearer a", sec_websocket_protocol="hypi.v1, " + access.encode_protocol_token("b")), "c"
    ) == ["a", "b", "c"]
    d = decide(origin="https://evil.example", authorization="Bearer s3cret")
    assert d.status == 403 and "evil.example" in d.message
    assert decide(origin="http://box:5180", authorization="Bearer s3cret").allowed


def test_loopback_detection():
    assert access.is_loopback("127.0.0.1") and access.is_loopback("::1") and access.is_loopback("localhost")
    assert not access.is_loopback("0.0.0.0") and not access.is_loopback("192.168.1.2")


def test_without_a_token_only_this_machine_may_drive_agents_through_the_proxy():
    from hypivisor.access import remote_without_token

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
