"""Token and Origin checks for every WebSocket endpoint (specs/protocol.md §1). Pure.

Both the front protocol (for ``/ws/agent/<id>``, before any byte reaches the
agent) and the aiohttp registry handler (for ``/ws``) call :func:`check` with
the request's headers and query, and reject before the upgrade.

Origin is checked first: a cross-site page gets 403 whatever token it guessed.
Then the token: ``Authorization: Bearer``, a ``hypi-token.<base64url>``
subprotocol (browsers cannot set headers), or ``?token=``. Comparison is
constant time on UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

TOKEN_PROTOCOL_PREFIX = "hypi-token."
SELECTED_PROTOCOL = "hypi.v1"
VITE_DEV_PORT = 5180


@dataclass(frozen=True)
class Decision:
    status: int  # 200 = allowed, 401 = token, 403 = origin
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


ALLOWED = Decision(200)


def default_origins(hostnames: Iterable[str], ports: Iterable[int]) -> set[str]:
    """The dashboard's own origins plus the Vite dev server's, for every name of this machine."""
    hosts = {"localhost", "127.0.0.1", "[::1]", *(h for h in hostnames if h)}
    return {f"{scheme}://{h}:{p}" for h in hosts for p in {*ports, VITE_DEV_PORT} if p for scheme in ("http", "https")}


def parse_allowed_origins(value: str | None) -> set[str]:
    """``HYPI_ALLOWED_ORIGINS``: comma-separated exact origins (a trailing slash is forgiven)."""
    if not value:
        return set()
    return {o.strip().rstrip("/") for o in value.split(",") if o.strip()}


def subprotocols(header_value: str | None) -> list[str]:
    return [p.strip() for p in (header_value or "").split(",") if p.strip()]


def _decode_protocol_token(proto: str) -> str | None:
    raw = proto[len(TOKEN_PROTOCOL_PREFIX) :]
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded or None


def encode_protocol_token(token: str) -> str:
    """The subprotocol a browser offers to carry ``token`` (used by tests and Pi-DE)."""
    return TOKEN_PROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def presented_tokens(get_header: Callable[[str], str | None], query_token: str | None) -> list[str]:
    """Every token the client offered, in the documented order."""
    found: list[str] = []
    authz = get_header("authorization") or ""
    scheme, _, value = authz.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    for proto in subprotocols(get_header("sec-websocket-protocol")):
        if proto.startswith(TOKEN_PROTOCOL_PREFIX):
            decoded = _decode_protocol_token(proto)
            if decoded is not None:
                found.append(decoded)
    if query_token is not None:
        found.append(query_token)
    return found


def token_ok(expected: str | None, offered: list[str]) -> bool:
    """Constant-time match of any offered token; no expected token means no auth."""
    if not expected:
        return True
    want = expected.encode("utf-8")
    ok = False
    for candidate in offered:
        ok |= hmac.compare_digest(want, candidate.encode("utf-8", "surrogatepass"))
    return ok


def origin_ok(origin: str | None, allowed: set[str]) -> bool:
    """No Origin = a non-browser client (allowed); otherwise an exact match."""
    if origin is None:
        return True
    return origin.rstrip("/") in allowed


def check(
    get_header: Callable[[str], str | None],
    query_token: str | None,
    expected_token: str | None,
    allowed_origins: set[str],
) -> Decision:
    """Decide a WebSocket upgrade before doing any work for it."""
    origin = get_header("origin")
    if not origin_ok(origin, allowed_origins):
        return Decision(403, f"origin {origin!r} is not allowed (set HYPI_ALLOWED_ORIGINS to allow it)")
    if not token_ok(expected_token, presented_tokens(get_header, query_token)):
        return Decision(401, "missing or wrong token (HYPI_TOKEN)")
    return ALLOWED


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the hypivisor private to this machine."""
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def peer_is_loopback(peer_host: str | None) -> bool:
    """Whether a connected peer address is this machine (IPv4, IPv6 and v4-mapped forms)."""
    if not peer_host:
        return False
    try:
        addr = ipaddress.ip_address(peer_host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


def remote_without_token(expected_token: str | None, peer_host: str | None, allow_remote: bool) -> Decision:
    """Driving an agent runs bash: with no token set, only clients on this machine may open the proxy
    (unless the operator explicitly allowed it). A token makes the check unnecessary."""
    if expected_token or allow_remote or peer_is_loopback(peer_host):
        return ALLOWED
    return Decision(
        403,
        "driving agents from another machine needs HYPI_TOKEN on the hypivisor "
        "(or --allow-unauthenticated-remote)",
    )
