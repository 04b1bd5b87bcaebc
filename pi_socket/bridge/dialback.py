"""Dial-back links: the bridge opens an agent link to the hypivisor when asked, so its machine needs no open port.

The hypivisor sends ``{event: "dial_back", nonce}`` down this bridge's registry connection when a browser opens
``/ws/agent/<id>`` (specs/machines.md, "Links without inbound ports"). The bridge then:

1. opens a new TCP connection to the hypivisor's address from ``HYPIVISOR_WS`` (TLS when ``wss``);
2. sends ``GET <base>/ws/dialback/<nonce>`` with ``Upgrade: hypi-dialback`` and the token as on ``/ws``;
3. reads the answer: ``101`` hands the connection to the agent server exactly as if a client had connected to the
   agent port (the next bytes are the browser's WebSocket upgrade request); anything else is logged and closed.

The pure parts (where to dial, the request head, reading the response head) are functions here; the I/O is one
small asyncio protocol, bounded in bytes and time.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import structlog

from pi_socket import __version__

MAX_RESPONSE_HEAD = 16 * 1024
DIAL_TIMEOUT_S = 10.0  # connect + TLS + answer; the hypivisor's nonce is good for less than this anyway
UPGRADE_TOKEN = "hypi-dialback"
CAPABILITY = "dial_back"  # in register.capabilities while this bridge can adopt dialled-back connections
URL_CAPABILITY = "dial_back_url"  # and honours a dial_back's ``url`` (a hypivisor of its own list), answering it
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")  # what the hypivisor makes (token_urlsafe); nothing else is dialled
log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__

Adopt = Callable[[asyncio.Transport, bytes], None]  # hand a connected transport (+ bytes read) to the agent server


class DialBackError(Exception):
    """The hypivisor refused the dial-back, or the URL cannot be dialled."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool
    base: str  # the registry URL's path without its final ``/ws`` (a reverse proxy may mount it under a prefix)


def target(url: str) -> Target:
    """Where to dial back: the host and port of ``HYPIVISOR_WS``, TLS for ``wss``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DialBackError(f"bad HYPIVISOR_WS {url!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise DialBackError(f"HYPIVISOR_WS must be ws:// or wss://, not {url!r}")
    tls = parts.scheme == "wss"
    path = parts.path.rstrip("/")
    base = path[: -len("/ws")] if path.endswith("/ws") else path
    return Target(parts.hostname, port or (443 if tls else 80), tls, base)


def valid_nonce(nonce: object) -> bool:
    return isinstance(nonce, str) and _NONCE.fullmatch(nonce) is not None


def request_head(t: Target, nonce: str, token: str | None) -> bytes:
    """The dial-back request: names the nonce, carries the token as every endpoint requires, asks to upgrade."""
    host = f"[{t.host}]" if ":" in t.host else t.host
    default = 443 if t.tls else 80
    lines = [
        f"GET {t.base}/ws/dialback/{nonce} HTTP/1.1",
        f"Host: {host}" + ("" if t.port == default else f":{t.port}"),
        "Connection: Upgrade",
        f"Upgrade: {UPGRADE_TOKEN}",
        f"User-Agent: pi-socket/{__version__}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Answer:
    status: int
    message: str  # the reason phrase, or the JSON error's message when there is one
    end: int  # index just past the head


def read_answer(buf: bytes | bytearray) -> Answer | None:
    """The hypivisor's answer once its head is complete (None before); DialBackError for a malformed one."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_RESPONSE_HEAD:
            raise DialBackError(f"answer head larger than {MAX_RESPONSE_HEAD} bytes")
        return None
    head = bytes(buf[:end]).decode("latin-1")
    status_line = head.split("\r\n", 1)[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise DialBackError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(parts[1])
    message = parts[2] if len(parts) > 2 else ""
    if status != 101:
        try:
            body = orjson.loads(bytes(buf[end + 4 :]))
            message = str(body["error"]["message"])[:300]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    elif UPGRADE_TOKEN not in head.lower():
        raise DialBackError("101 without Upgrade: hypi-dialback")
    return Answer(status, message, end + 4)


class _Dialler(asyncio.Protocol):
    """Sends the request, reads the answer; on 101 gives the transport (and any bytes after the head) away."""

    def __init__(self, head: bytes, adopt: Adopt, done: asyncio.Future[int]):
        self.head = head
        self.adopt = adopt
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.head)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buf += data
        try:
            answer = read_answer(self.buf)
        except DialBackError as exc:
            self._fail(exc)
            return
        if answer is None:
            return
        if answer.status != 101:
            self._fail(DialBackError(f"hypivisor answered {answer.status}: {answer.message}"))
            return
        transport, self.transport = self.transport, None
        assert transport is not None
        early = bytes(self.buf[answer.end :])
        self.buf = bytearray()
        self.done.set_result(101)
        self.adopt(transport, early)  # the agent server's protocol takes the transport over from here

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(DialBackError(f"connection closed before an answer: {exc or 'EOF'}"))

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


async def dial(url: str, token: str | None, nonce: str, adopt: Adopt, timeout: float = DIAL_TIMEOUT_S) -> None:
    """Open one dial-back link; raises DialBackError (refused, malformed), OSError or TimeoutError."""
    if not valid_nonce(nonce):
        raise DialBackError("malformed nonce")
    t = target(url)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    tls = ssl.create_default_context() if t.tls else None
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(
                lambda: _Dialler(request_head(t, nonce, token), adopt, done),
                t.host,
                t.port,
                ssl=tls,
                server_hostname=t.host if tls else None,
            )
            await done
    except BaseException:
        if transport is not None and not done.done():
            transport.close()
        raise
