"""The WebSocket handshake rules shared by the hypivisor and the agent bridge (specs/protocol.md §1). Pure.

Both servers decide an upgrade before doing any work for it, with the same rules:

* Origin first: a browser page from a foreign site gets 403 whatever token it carries. No Origin means a
  non-browser client; otherwise the Origin must match an allowed one exactly (a trailing slash is forgiven).
* Then the token, from any of its carriers, in this order: ``Authorization: Bearer <token>``, a
  ``hypi-token.<base64url, no padding>`` subprotocol (browsers cannot set headers), ``?token=``.
  Every offered token is compared in constant time on UTF-8 bytes; no configured token means no auth.
* The only subprotocol ever selected is ``hypi.v1``; the token protocol is never echoed back.

Each server adapts its own request object to these functions (``hypivisor.access``, ``pi_socket.bridge.port_auth``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

TOKEN_PROTOCOL_PREFIX = "hypi-token."
APP_PROTOCOL = "hypi.v1"
VITE_DEV_PORT = 5180

ORIGIN_HINT = "set HYPI_ALLOWED_ORIGINS to allow it"
TOKEN_MESSAGE = "missing or wrong token (HYPI_TOKEN)"
DUPLICATE_MESSAGE = "Authorization and Origin may each be sent once"


@dataclass(frozen=True)
class Decision:
    """The answer to one upgrade request: 200 = go ahead, else the HTTP status to refuse with."""

    status: int  # 200 allowed, 400 ambiguous request, 401 token, 403 origin or policy
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


ALLOWED = Decision(200)


# ------------------------------------------------------------------ origins
def default_origins(hostnames: Iterable[str], ports: Iterable[int]) -> set[str]:
    """The dashboard's own origins plus the Vite dev server's, for every name of this machine."""
    hosts = {"localhost", "127.0.0.1", "[::1]", *(h for h in hostnames if h)}
    return {f"{scheme}://{h}:{p}" for h in hosts for p in {*ports, VITE_DEV_PORT} if p for scheme in ("http", "https")}


def parse_allowed_origins(value: str | None) -> set[str]:
    """``HYPI_ALLOWED_ORIGINS``: comma-separated exact origins (a trailing slash is forgiven)."""
    if not value:
        return set()
    return {o.strip().rstrip("/") for o in value.split(",") if o.strip()}


def origin_ok(origin: str | None, allowed: Iterable[str]) -> bool:
    """No Origin = a non-browser client (allowed); otherwise an exact match."""
    if origin is None:
        return True
    return origin.rstrip("/") in allowed


# ------------------------------------------------------------------ token carriers
def split_protocols(header_values: Iterable[str | None]) -> list[str]:
    """All offered subprotocols from (possibly several) Sec-WebSocket-Protocol header values."""
    out: list[str] = []
    for value in header_values:
        out.extend(p.strip() for p in (value or "").split(",") if p.strip())
    return out


def encode_token_protocol(token: str) -> str:
    """The subprotocol a browser offers to carry ``token``."""
    return TOKEN_PROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def decode_token_protocol(proto: str) -> str | None:
    """``hypi-token.<base64url>`` → the token; None if it is not strict base64url of non-empty UTF-8."""
    raw = proto[len(TOKEN_PROTOCOL_PREFIX) :]
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded or None


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme in any case), else None."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def presented_tokens(authorization: str | None, protocols: Iterable[str], query_tokens: Iterable[str]) -> list[str]:
    """Every token the client offered, in the documented order: header, subprotocol, query."""
    found: list[str] = []
    bearer = bearer_token(authorization)
    if bearer is not None:
        found.append(bearer)
    for proto in protocols:
        if proto.startswith(TOKEN_PROTOCOL_PREFIX):
            decoded = decode_token_protocol(proto)
            if decoded is not None:
                found.append(decoded)
    found.extend(query_tokens)
    return found


def token_ok(expected: str | None, offered: Iterable[str]) -> bool:
    """Constant-time match of any offered token (no early exit); no expected token means no auth."""
    if not expected:
        return True
    want = expected.encode("utf-8")
    ok = False
    for candidate in offered:
        ok |= hmac.compare_digest(want, candidate.encode("utf-8", "surrogatepass"))
    return ok


# ------------------------------------------------------------------ decisions
def decide(
    *,
    expected_token: str | None,
    allowed_origins: Iterable[str],
    origin: str | None,
    authorization: str | None,
    protocols: Iterable[str],
    query_tokens: Iterable[str],
) -> Decision:
    """403 for a foreign Origin, 401 for a missing or wrong token, else allowed."""
    if not origin_ok(origin, allowed_origins):
        return Decision(403, f"origin {origin!r} is not allowed ({ORIGIN_HINT})")
    if not token_ok(expected_token, presented_tokens(authorization, protocols, query_tokens)):
        return Decision(401, TOKEN_MESSAGE)
    return ALLOWED


def single_credentials(authorization: list[str], origin: list[str]) -> Decision:
    """Authorization or Origin sent twice is a 400: which one would count is ambiguous (a proxy may read the
    other)."""
    if len(authorization) > 1 or len(origin) > 1:
        return Decision(400, DUPLICATE_MESSAGE)
    return ALLOWED


def select_protocol(offered: Iterable[str]) -> str | None:
    """Pick ``hypi.v1`` when offered; the token protocol is never echoed back."""
    return APP_PROTOCOL if APP_PROTOCOL in offered else None
