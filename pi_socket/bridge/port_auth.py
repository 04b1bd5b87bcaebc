"""The agent port's side of the handshake rules (:mod:`pi_socket.handshake`), with no I/O.

The server calls :func:`check_request` before the WebSocket upgrade with every value of the headers as
received and answers 400/401/403 itself, so an unauthenticated peer never gets a connection, never sees
``init_state`` and costs us no state.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from pi_socket.handshake import ALLOWED, Decision, decide, select_protocol, single_credentials, split_protocols
from pi_socket.handshake import presented_tokens as _presented_tokens

__all__ = ["ALLOWED", "Decision", "check_handshake", "check_request", "presented_tokens", "query_tokens",
           "select_protocol", "split_protocols"]  # fmt: skip


def query_tokens(path: str) -> list[str]:
    """Every ``token`` value of the request target's query (percent-decoded)."""
    return parse_qs(urlsplit(path).query).get("token", [])


def presented_tokens(authorization: str | None, protocols: list[str], path: str) -> list[str]:
    """Every token the client offered, in the spec's order: header, subprotocol, query."""
    return _presented_tokens(authorization, protocols, query_tokens(path))


def check_handshake(
    *,
    token: str | None,
    allowed_origins: frozenset[str],
    authorization: str | None,
    protocols: list[str],
    path: str,
    origin: str | None,
) -> Decision:
    """Decide a handshake from single header values (:func:`pi_socket.handshake.decide`)."""
    return decide(
        expected_token=token,
        allowed_origins=allowed_origins,
        origin=origin,
        authorization=authorization,
        protocols=protocols,
        query_tokens=query_tokens(path),
    )


def check_request(
    *,
    token: str | None,
    allowed_origins: frozenset[str],
    authorization: list[str],
    protocols: list[str],
    path: str,
    origin: list[str],
) -> Decision:
    """:func:`check_handshake` on every value of the Authorization and Origin headers as received; either
    header sent twice is a 400 (:func:`pi_socket.handshake.single_credentials`)."""
    once = single_credentials(authorization, origin)
    if not once.allowed:
        return once
    return check_handshake(
        token=token,
        allowed_origins=allowed_origins,
        authorization=authorization[0] if authorization else None,
        protocols=protocols,
        path=path,
        origin=origin[0] if origin else None,
    )
