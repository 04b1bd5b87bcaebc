"""Cluster mode's agent links (specs/cluster.md §7), the pure parts: the owner's reading of another hypivisor's
dial-back request, when it answers "cannot" at once, the book of forwarded dial-backs, the hop token's acceptance
and the settings (``HYPI_NATS_ADVERTISE_WS``, ``HYPI_CLUSTER_TOKEN``)."""

from __future__ import annotations

import pytest

from hypivisor import access, dialback
from pi_socket.handshake import encode_token_protocol

NONCE = "AbCdEfGhIjKlMnOpQrStUv"


def test_the_owner_reads_a_dial_back_request_or_says_what_is_wrong() -> None:
    ask = dialback.forward_request({"op": "dial_back", "nonce": NONCE, "url": "ws://b:31415/ws", "expires_in": 5})
    assert ask == dialback.ForwardRequest(NONCE, "ws://b:31415/ws", 5.0)
    assert dialback.forward_request({"nonce": NONCE, "url": "wss://b/ws"}).expires_in == dialback.DIAL_BACK_TTL
    for bad in (
        None,
        [],
        {"url": "ws://b/ws"},
        {"nonce": "short", "url": "ws://b/ws"},
        {"nonce": NONCE + "/..", "url": "ws://b/ws"},
        {"nonce": NONCE},
        {"nonce": NONCE, "url": "http://b/ws"},
        {"nonce": NONCE, "url": "ws://" + "b" * 3000},
        {"nonce": NONCE, "url": "ws://b/ws", "expires_in": 0},
        {"nonce": NONCE, "url": "ws://b/ws", "expires_in": 11},
        {"nonce": NONCE, "url": "ws://b/ws", "expires_in": True},
        {"nonce": NONCE, "url": "ws://b/ws", "expires_in": "5"},
    ):
        with pytest.raises(ValueError):
            dialback.forward_request(bad)


def test_the_owner_answers_at_once_when_the_bridge_cannot_dial_another_hypivisor() -> None:
    both = ["sessions", dialback.CAPABILITY, dialback.URL_CAPABILITY]
    assert dialback.forward_refusal(both, True) is None
    assert "older" in dialback.forward_refusal(["sessions", dialback.CAPABILITY], True)  # type: ignore[operator]
    assert "does not dial back" in dialback.forward_refusal(None, True)  # type: ignore[operator]
    assert "does not dial back" in dialback.forward_refusal([dialback.URL_CAPABILITY], True)  # type: ignore[operator]
    assert "gone" in dialback.forward_refusal(both, False)  # type: ignore[operator]


def test_a_forwarded_dial_back_is_settled_only_by_the_connection_it_went_to() -> None:
    book = dialback.ForwardBook(max_pending=2)
    assert book.add(NONCE, "c1", "waiter")
    assert not book.add(NONCE, "c1", "again")  # one waiting entry per nonce
    assert book.settle(NONCE, "c2") is None  # another connection cannot settle it
    assert book.settle("X" * 22, "c1") is None
    assert book.settle(NONCE, "c1") == "waiter"
    assert book.settle(NONCE, "c1") is None and len(book) == 0  # once
    assert book.add("a" * 16, "c1", 1) and book.add("b" * 16, "c1", 2)
    assert not book.add("c" * 16, "c1", 3)  # bounded
    book.drop("a" * 16)
    assert len(book) == 1 and book.add("c" * 16, "c1", 3)
    assert NONCE.encode() not in repr(book._pending).encode()  # stored hashed


def _headers(**values: str):
    lowered = {k.lower().replace("_", "-"): v for k, v in values.items()}
    return lambda name: lowered.get(name.lower())


def test_the_cluster_token_is_a_hypivisors_hop_credential_only() -> None:
    cluster = "cluster-secret-123"
    assert access.cluster_hop(_headers(Authorization=f"Bearer {cluster}"), cluster)
    assert access.cluster_hop(_headers(Authorization=f"bearer {cluster}"), cluster)
    assert not access.cluster_hop(_headers(Authorization=f"Bearer {cluster}"), None)  # not set: no hop token
    assert not access.cluster_hop(_headers(Authorization="Bearer dashboard-token"), cluster)
    assert not access.cluster_hop(_headers(), cluster)
    # a browser's carriers (subprotocol; the query is not even looked at) or any Origin: never a hop
    assert not access.cluster_hop(_headers(Sec_WebSocket_Protocol=encode_token_protocol(cluster)), cluster)
    assert not access.cluster_hop(_headers(Authorization=f"Bearer {cluster}", Origin="http://localhost:5180"), cluster)


def test_cluster_settings() -> None:
    from hypivisor.cluster.link import ClusterError, advertised_ws, cluster_token_from

    assert advertised_ws("127.0.0.1", 31415, {}) == "ws://127.0.0.1:31415/ws"
    assert advertised_ws("::1", 9, {}) == "ws://[::1]:9/ws"
    assert advertised_ws("h", 9, {"HYPI_NATS_ADVERTISE_WS": " wss://hv-b.example/hypi/ws "}) == (
        "wss://hv-b.example/hypi/ws"
    )
    with pytest.raises(ClusterError, match="HYPI_NATS_ADVERTISE_WS"):
        advertised_ws("h", 9, {"HYPI_NATS_ADVERTISE_WS": "http://b/ws"})
    assert cluster_token_from({}) is None
    assert cluster_token_from({"HYPI_CLUSTER_TOKEN": ""}) is None
    assert cluster_token_from({"HYPI_CLUSTER_TOKEN": "abc-DEF_123"}) == "abc-DEF_123"
    for bad in ("has space", "tab\there", "x" * 513, "nul\x00"):
        with pytest.raises(ClusterError, match="HYPI_CLUSTER_TOKEN"):
            cluster_token_from({"HYPI_CLUSTER_TOKEN": bad})
