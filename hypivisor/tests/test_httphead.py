"""Request head parsing, routing and the rewrite sent to the agent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypivisor import httphead
from hypivisor.httphead import HeadError

UPGRADE = (
    b"GET /ws/agent/n%201?token=t%2Bx HTTP/1.1\r\n"
    b"Host: hv.example:31415\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Origin: http://localhost:5180\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Protocol: hypi.v1, hypi-token.abc\r\n"
    b"Authorization: Bearer s3cret\r\n"
    b"\r\n"
)


def test_head_end_found_only_when_complete():
    assert httphead.find_head_end(UPGRADE[:-2]) == -1
    assert httphead.find_head_end(UPGRADE + b"\x81\x00") == len(UPGRADE)


def test_parse_upgrade_request():
    head = httphead.parse_head(UPGRADE)
    assert (head.method, head.path, head.query) == ("GET", "/ws/agent/n%201", "token=t%2Bx")
    assert head.is_websocket and head.get("ORIGIN") == "http://localhost:5180"
    assert head.query_param("token") == "t+x" and head.query_param("nope") is None


def test_repeated_headers_are_joined():
    head = httphead.parse_head(b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert head.get("x-a") == "1, 2" and head.get("missing") is None


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /x\r\n\r\n", b"GET x HTTP/1.1\r\n\r\n", b"GET / HTTP/2\r\n\r\n",
     b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"G(T / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"],
)  # fmt: skip
def test_malformed_heads_are_rejected(raw):
    with pytest.raises(HeadError):
        httphead.parse_head(raw)


@given(st.binary(max_size=300))
def test_parser_never_fails_other_than_with_head_error(data):
    try:
        httphead.parse_head(data)
    except HeadError:
        pass


@pytest.mark.parametrize(
    "path,expected",
    [("/ws/agent/abc", "abc"), ("/ws/agent/a%2Fb", "a/b"), ("/ws/agent/abc/", "abc"), ("/ws/agent/", ""),
     ("/ws", None), ("/ws/agentx", None), ("/ws/agent/a/b", None), ("/", None)],
)  # fmt: skip
def test_agent_route(path, expected):
    assert httphead.agent_node_id(path) == expected


def test_rewrite_for_agent_drops_the_dashboards_credentials_and_origin_and_rewrites_host():
    head = httphead.parse_head(UPGRADE.replace(b"Upgrade: websocket", b"Cookie: session=abc\r\nUpgrade: websocket"))
    out = httphead.rewrite_for_agent(head, "10.0.0.7", 8123)
    lines = out.split(b"\r\n")
    assert lines[0] == b"GET / HTTP/1.1"
    assert lines[1] == b"Host: 10.0.0.7:8123"
    assert not any(line.lower().startswith((b"origin:", b"host: hv", b"authorization", b"cookie")) for line in lines)
    assert b"s3cret" not in out and b"abc" not in out.split(b"Sec-WebSocket-Key")[0] and b"t%2Bx" not in out
    for kept in (b"Sec-WebSocket-Protocol: hypi.v1", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 b"Upgrade: websocket"):  # fmt: skip
        assert kept in lines
    assert out.endswith(b"\r\n\r\n")


def test_rewrite_for_agent_carries_the_hypivisors_own_token_and_other_query_params():
    head = httphead.parse_head(b"GET /ws/agent/x?a=1&token=zz&b=2 HTTP/1.1\r\nHost: h\r\n"
                               b"Sec-WebSocket-Protocol: hypi-token.enp6\r\n\r\n")  # fmt: skip
    out = httphead.rewrite_for_agent(head, "127.0.0.1", 9, token="hv-token")
    lines = out.split(b"\r\n")
    assert lines[0] == b"GET /?a=1&b=2 HTTP/1.1" and b"Authorization: Bearer hv-token" in lines
    assert not any(line.lower().startswith(b"sec-websocket-protocol") for line in lines)


def test_rewrite_without_query_and_ipv6_host():
    head = httphead.parse_head(b"GET /ws/agent/x HTTP/1.1\r\nHost: a\r\n\r\n")
    out = httphead.rewrite_for_agent(head, "::1", 9)
    assert out.startswith(b"GET / HTTP/1.1\r\nHost: [::1]:9\r\n")


def test_error_response_is_complete_json():
    raw = httphead.error_response(404, 1006, "unknown agent 'x'")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert f"Content-Length: {len(body)}".encode() in head and b"Connection: close" in head
    assert body == b'{"error":{"code":1006,"message":"unknown agent \'x\'"}}'
