"""HTTP/1.1 request heads: parse, route, rewrite for the agent, and tiny error responses.

Pure bytes in, values out. The front protocol buffers at most ``MAX_HEAD``
bytes, parses the head here, and decides whether the connection becomes a
byte splice to an agent or goes to aiohttp. Only the head is ever parsed; after
the handshake the proxy never looks at a WebSocket frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, quote, unquote, unquote_plus

import orjson

from pi_socket.handshake import TOKEN_PROTOCOL_PREFIX

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100  # header lines per head (aiohttp, which parses the same bytes again, is given more)
AGENT_PREFIX = "/ws/agent/"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods and header names
# Bytes no header value may hold (RFC 9110 5.5: VCHAR, obs-text, SP, HTAB): a bare CR or LF would end the line
# for a lenient parser downstream (the agent, aiohttp) but not for us, so the two would read different heads.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(r"[\x21-\x7e]+")  # a request target is visible ASCII (RFC 9112 3.2; browsers percent-encode)


class HeadError(Exception):
    """The bytes are not an HTTP/1.x request head we accept (answered with 400)."""


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: tuple[tuple[str, str], ...]  # original names and order, values stripped

    def get(self, name: str) -> str | None:
        """All values of a header joined with ", " (RFC 9110), or None."""
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    def query_param(self, name: str) -> str | None:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None

    @property
    def is_websocket(self) -> bool:
        upgrade = (self.get("upgrade") or "").lower()
        connection = (self.get("connection") or "").lower()
        return "websocket" in upgrade and "upgrade" in connection


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending the head, or -1 while incomplete.

    ``start``: where to resume scanning (the caller's buffer length before its last append); three
    bytes before it are scanned again so a ``\\r\\n\\r\\n`` split across appends is found.
    """
    i = buf.find(b"\r\n\r\n", max(0, start - 3))
    return -1 if i < 0 else i + 4


def parse_head(raw: bytes) -> RequestHead:
    """Parse a request head (request line + headers, CRLF-separated, trailing blank line optional)."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
        raise HeadError("undecodable head") from exc
    if text.endswith("\r\n\r\n"):
        text = text[:-4]
    elif text.endswith("\r\n"):
        text = text[:-2]
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise HeadError("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HeadError("malformed method")
    if not _TARGET.fullmatch(target):
        raise HeadError("request target holds a control, space or non-ASCII byte (percent-encode it)")
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise HeadError("request target must be a path")
    if len(lines) - 1 > MAX_HEADERS:
        raise HeadError(f"more than {MAX_HEADERS} header lines")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HeadError(f"malformed header line: {line[:40]!r}")
        if _BAD_VALUE.search(value):
            raise HeadError(f"header {name[:40]!r} holds a control byte (CR, LF, NUL, ...)")
        headers.append((name, value.strip(" \t")))
    return RequestHead(method, target, path, query, version, tuple(headers))


def agent_node_id(path: str) -> str | None:
    """The node id of ``/ws/agent/<id>`` (percent-decoded), '' for a missing id, None for other paths."""
    if not path.startswith(AGENT_PREFIX):
        return None
    rest = path[len(AGENT_PREFIX) :]
    if "/" in rest.rstrip("/"):
        return None
    return unquote(rest.rstrip("/"))


# The dashboard's credentials stay with the hypivisor: the agent gets the hypivisor's own token instead.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "host", "origin"})
_TOKEN_PROTOCOL_PREFIX = TOKEN_PROTOCOL_PREFIX.lower()


def _without_token_param(query: str) -> str:
    """``query`` without any parameter whose name decodes to ``token`` (``%74oken`` too: the hypivisor's auth
    reads names decoded, so every spelling it accepts is removed)."""
    return "&".join(p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) != "token")


def _is_token_protocol(proto: str) -> bool:
    return proto[: len(_TOKEN_PROTOCOL_PREFIX)].lower() == _TOKEN_PROTOCOL_PREFIX


def rewrite_for_agent(head: RequestHead, host: str, port: int, token: str | None = None) -> bytes:
    """The upgrade request as the agent must see it.

    Path becomes ``/``, Host names the agent, and ``Origin`` is dropped because the hypivisor already vouched for
    it (the bridge would otherwise reject the dashboard's origin). The dashboard's credentials never reach the
    agent: ``Authorization``, ``Cookie``, ``Proxy-Authorization``, a ``token`` query parameter and
    ``hypi-token.*`` subprotocols (any case) are removed, and the hypivisor authenticates with its own token
    (``Authorization: Bearer``) when it has one: the bridge checks the same ``HYPI_TOKEN``, and every agent the
    proxy dials registered over ``/ws``, which already required that token, so it learns nothing new. Everything
    else (keys, other subprotocols such as ``hypi.v1``, extensions) is passed unchanged, so the WebSocket
    handshake stays end to end and the negotiated protocol is one the browser offered.
    """
    query = _without_token_param(head.query)
    target = "/" + ("?" + query if query else "")
    host_value = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    out = [f"{head.method} {target} {head.version}", f"Host: {host_value}"]
    if token:
        out.append(f"Authorization: Bearer {token}")
    for name, value in head.headers:
        lower = name.lower()
        if lower in _CREDENTIAL_HEADERS:
            continue
        if lower == "sec-websocket-protocol":
            kept = [p.strip() for p in value.split(",") if p.strip() and not _is_token_protocol(p.strip())]
            if not kept:
                continue
            value = ", ".join(kept)
        out.append(f"{name}: {value}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def rewrite_for_hypivisor(head: RequestHead, host: str, port: int, node_id: str, token: str | None) -> bytes:
    """The upgrade request as another hypivisor's agent proxy must see it (cluster mode): as
    :func:`rewrite_for_agent` (the client's credentials and Origin dropped, this hypivisor's token instead), with
    the path ``/ws/agent/<id>`` so the owner splices on to its agent."""
    first = rewrite_for_agent(head, host, port, token)
    line, sep, tail = first.partition(b"\r\n")
    method, target, version = line.split(b" ", 2)
    path = b"/ws/agent/" + quote(node_id, safe="").encode("ascii")
    query = target[1:] if target.startswith(b"/?") else b""
    return b" ".join((method, path + query, version)) + sep + tail


def error_response(status: int, code: int, message: str, extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete ``Connection: close`` response with body ``{error:{code,message}}``."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    reason = HTTPStatus(status).phrase
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        *(f"{k}: {v}" for k, v in extra_headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
