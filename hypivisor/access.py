"""The hypivisor's side of the handshake rules (:mod:`pi_socket.handshake`), plus its own remote policy. Pure.

Both the front protocol (for ``/ws/agent/<id>``, before any byte reaches the agent) and the aiohttp registry
handler (for ``/ws``) call :func:`check` with the request's header getter and its first ``token`` query
value, and reject before the upgrade.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from pi_socket.handshake import (
    ALLOWED,
    APP_PROTOCOL,
    Decision,
    bearer_token,
    decide,
    default_origins,
    encode_token_protocol,
    parse_allowed_origins,
    split_protocols,
    token_ok,
)
from pi_socket.handshake import presented_tokens as _presented_tokens

__all__ = [
    "ALLOWED", "SELECTED_PROTOCOL", "Decision", "check", "cluster_hop", "default_origins", "encode_protocol_token",
    "is_loopback", "parse_allowed_origins", "peer_is_loopback", "presented_tokens", "remote_without_token",
]  # fmt: skip

SELECTED_PROTOCOL = APP_PROTOCOL
encode_protocol_token = encode_token_protocol


def presented_tokens(get_header: Callable[[str], str | None], query_token: str | None) -> list[str]:
    """Every token the client offered, in the documented order."""
    protocols = split_protocols([get_header("sec-websocket-protocol")])
    return _presented_tokens(get_header("authorization"), protocols, [] if query_token is None else [query_token])


def check(
    get_header: Callable[[str], str | None],
    query_token: str | None,
    expected_token: str | None,
    allowed_origins: set[str],
) -> Decision:
    """Decide a WebSocket upgrade before doing any work for it (:func:`pi_socket.handshake.decide`)."""
    return decide(
        expected_token=expected_token,
        allowed_origins=allowed_origins,
        origin=get_header("origin"),
        authorization=get_header("authorization"),
        protocols=split_protocols([get_header("sec-websocket-protocol")]),
        query_tokens=[] if query_token is None else [query_token],
    )


def cluster_hop(get_header: Callable[[str], str | None], cluster_token: str | None) -> bool:
    """Whether an ``/ws/agent/<id>`` upgrade is another hypivisor's hop (cluster mode, ``HYPI_CLUSTER_TOKEN``,
    specs/cluster.md §7): the cluster token as ``Authorization: Bearer`` (a header no browser can set on a
    WebSocket) and no ``Origin`` (a hypivisor's hop drops it). Never a dashboard's credential: the cluster token in a
    subprotocol or the query, or sent with an Origin, is not accepted, and the caller accepts a hop only on
    ``/ws/agent/<id>`` for an agent it holds itself."""
    if not cluster_token or get_header("origin") is not None:
        return False
    offered = bearer_token(get_header("authorization"))
    return offered is not None and token_ok(cluster_token, [offered])


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
        "driving agents from another machine needs HYPI_TOKEN on the hypivisor (or --allow-unauthenticated-remote)",
    )
