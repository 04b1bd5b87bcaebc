"""The handshake rules both servers share (specs/protocol.md §1): token carriers, constant-time comparison,
Origin, subprotocol selection, without sockets."""

from __future__ import annotations

import hmac
import inspect

import pytest

from pi_socket import handshake as hs

ALLOWED = hs.default_origins({"box"}, {31415, 5181}) | {"https://pi.example.ts.net"}


def decide(token="s3cret", *, origin=None, authorization=None, protocols=(), query=()):
    return hs.decide(
        expected_token=token,
        allowed_origins=ALLOWED,
        origin=origin,
        authorization=authorization,
        protocols=list(protocols),
        query_tokens=list(query),
    )


# ------------------------------------------------------------------ token carriers
@pytest.mark.parametrize(
    "how",
    [dict(authorization="Bearer s3cret"), dict(authorization="bearer s3cret"), dict(authorization="Bearer  s3cret "),
     dict(query=["s3cret"]), dict(query=["nope", "s3cret"]),
     dict(protocols=["hypi.v1", hs.encode_token_protocol("s3cret")])],
)  # fmt: skip
def test_token_accepted_from_header_subprotocol_or_query(how):
    assert decide(**how).allowed


@pytest.mark.parametrize(
    "how",
    [dict(), dict(authorization="Bearer nope"), dict(authorization="Basic s3cret"), dict(authorization="Bearer"),
     dict(authorization="Bearer\ts3cret"), dict(query=["s3cre"]), dict(protocols=["hypi-token.!!!"]),
     dict(protocols=["hypi.v1"]), dict(protocols=[hs.encode_token_protocol("s3cret") + "!"])],
)  # fmt: skip
def test_missing_or_wrong_token_is_401(how):
    d = decide(**how)
    assert d.status == 401 and "HYPI_TOKEN" in d.message


def test_no_expected_token_allows_anything_without_origin():
    assert decide(token=None).allowed and decide(token="").allowed


def test_presented_tokens_keep_the_documented_order():
    assert hs.presented_tokens("Bearer a", ["hypi.v1", hs.encode_token_protocol("b")], ["c", "d"]) == list("abcd")


def test_subprotocol_token_roundtrip_for_non_ascii_and_garbage():
    tok = "pässwörd+/="
    proto = hs.encode_token_protocol(tok)
    assert "=" not in proto and hs.decode_token_protocol(proto) == tok
    assert hs.decode_token_protocol(proto + "==") == tok  # padding is optional
    for bad in (
        "hypi-token.!!!",
        "hypi-token.",
        "hypi-token.czNj cmV0",
        "hypi-token.czNjcmV0%",
        "hypi-token.ÿÿ",
        "hypi-token." + "__8",
    ):  # last: not UTF-8
        assert hs.decode_token_protocol(bad) is None, bad


def test_split_protocols_joins_every_header_value():
    assert hs.split_protocols(["hypi.v1, hypi-token.abc", "other", None, " , "]) == [
        "hypi.v1",
        "hypi-token.abc",
        "other",
    ]


def test_subprotocol_selection_never_echoes_the_token():
    assert hs.select_protocol(["hypi.v1", hs.encode_token_protocol("x")]) == "hypi.v1"
    assert hs.select_protocol([hs.encode_token_protocol("x")]) is None
    assert hs.select_protocol([]) is None


# ------------------------------------------------------------------ constant time
def test_token_comparison_is_constant_time():
    """Every offered token goes through hmac.compare_digest (no early exit), never == on the secret."""
    src = inspect.getsource(hs.token_ok)
    assert "hmac.compare_digest(" in src
    assert "==" not in src.replace("compare_digest", ""), "plain comparison of the token"
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    hmac.compare_digest = spy
    try:
        assert hs.token_ok("s3cret", ["s3cret", "nope"]) and not hs.token_ok("s3cret", ["s3cre"])
        assert not hs.token_ok("s3cret", ["x", "y"])
    finally:
        hmac.compare_digest = real
    assert len(calls) == 5, calls
    assert not hs.token_ok("s3cret", ["\udcff"])  # a lone surrogate is compared, not an exception


# ------------------------------------------------------------------ origin
def test_cross_site_origin_is_403_even_with_the_right_token():
    d = decide(origin="https://evil.example", authorization="Bearer s3cret")
    assert d.status == 403 and "evil.example" in d.message and "HYPI_ALLOWED_ORIGINS" in d.message


@pytest.mark.parametrize(
    "origin", ["http://localhost:5181", "http://127.0.0.1:31415", "http://[::1]:5180", "http://box:5180",
               "https://localhost:5180", "https://pi.example.ts.net", "https://pi.example.ts.net/"],
)  # fmt: skip
def test_own_dev_and_configured_origins_are_allowed(origin):
    assert decide(origin=origin, authorization="Bearer s3cret").allowed


@pytest.mark.parametrize(
    "origin", ["null", "http://localhost:9999", "http://localhost.evil:5180", "file://", "https://evil.example", ""]
)
def test_other_origins_are_refused(origin):
    assert decide(token=None, origin=origin).status == 403


def test_parse_allowed_origins():
    assert hs.parse_allowed_origins(" https://a.b/ , ,http://c:1") == {"https://a.b", "http://c:1"}
    assert hs.parse_allowed_origins(None) == set() and hs.parse_allowed_origins("") == set()


def test_default_origins_skip_empty_names_and_ports():
    assert hs.default_origins({""}, {0}) == {
        f"{s}://{h}:5180" for s in ("http", "https") for h in ("localhost", "127.0.0.1", "[::1]")
    }


# ------------------------------------------------------------------ duplicate credentials
def test_authorization_or_origin_sent_twice_is_400():
    assert hs.single_credentials(["Bearer a"], ["http://x"]).allowed
    assert hs.single_credentials([], []).allowed
    for auth, origin in ((["a", "a"], []), ([], ["x", "y"])):
        d = hs.single_credentials(auth, origin)
        assert d.status == 400 and "once" in d.message
