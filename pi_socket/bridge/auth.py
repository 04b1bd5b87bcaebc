"""Token and Origin check for the agent port (specs/protocol.md §1), with no I/O.

The server calls :func:`check_handshake` before the WebSocket upgrade and
answers 401/403 itself, so an unauthenticated peer never gets a connection,
never sees ``init_state`` and costs us no state.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

TOKEN_PROTOCOL_PREFIX = "hypi-token."
APP_PROTOCOL = "hypi.v1"


@dataclass(frozen=True)
class Verdict:
    """``status`` is None when the handshake may proceed; else the HTTP status to answer with."""

    status: HTTPStatus | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is None


ALLOW = Verdict(None)


def split_protocols(header_values: Iterable[str]) -> list[str]:
    """All offered subprotocols from (possibly several) Sec-WebSocket-Protocol headers."""
    out: list[str] = []
    for value in header_values:
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def _decode_token_protocol(proto: str) -> str | None:
    """``hypi-token.<base64url, no padding>`` → the token, or None if malformed."""
    raw = proto[len(TOKEN_PROTOCOL_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def presented_tokens(authorization: str | None, protocols: list[str], path: str) -> list[str]:
    """Every token the client offered, in the spec's order: header, subprotocol, query."""
    tokens: list[str] = []
    if authorization and authorization[:7].lower() == "bearer ":
        tokens.append(authorization[7:].strip())
    for proto in protocols:
        if proto.startswith(TOKEN_PROTOCOL_PREFIX):
            decoded = _decode_token_protocol(proto)
            if decoded is not None:
                tokens.append(decoded)
    query = urlsplit(path).query
    tokens.extend(parse_qs(query).get("token", []))
    return tokens


def token_matches(expected: str, offered: list[str]) -> bool:
    """Constant-time comparison against each offered token (no early exit on the first mismatch)."""
    want = expected.encode("utf-8")
    found = False
    for token in offered:
        found |= hmac.compare_digest(want, token.encode("utf-8"))
    return found


def check_handshake(
    *,
    token: str | None,
    allowed_origins: frozenset[str],
    authorization: str | None,
    protocols: list[str],
    path: str,
    origin: str | None,
) -> Verdict:
    """Decide a handshake: 403 for a foreign Origin, 401 for a missing/wrong token, else allow.

    Origin is checked first: a page from a foreign site is refused whatever it carries."""
    if origin is not None and origin.rstrip("/") not in allowed_origins:
        return Verdict(HTTPStatus.FORBIDDEN, "origin not allowed")
    if token and not token_matches(token, presented_tokens(authorization, protocols, path)):
        return Verdict(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
    return ALLOW


def check_request(
    *,
    token: str | None,
    allowed_origins: frozenset[str],
    authorization: list[str],
    protocols: list[str],
    path: str,
    origin: list[str],
) -> Verdict:
    """:func:`check_handshake` on every value of the Authorization and Origin headers as received.

    Either header sent twice is a 400: which one would count is ambiguous (a proxy may read the other)."""
    if len(authorization) > 1 or len(origin) > 1:
        return Verdict(HTTPStatus.BAD_REQUEST, "Authorization and Origin may each be sent once")
    return check_handshake(
        token=token,
        allowed_origins=allowed_origins,
        authorization=authorization[0] if authorization else None,
        protocols=protocols,
        path=path,
        origin=origin[0] if origin else None,
    )


def select_protocol(offered: list[str]) -> str | None:
    """Pick ``hypi.v1`` when offered; the token protocol is never echoed back."""
    return APP_PROTOCOL if APP_PROTOCOL in offered else None
