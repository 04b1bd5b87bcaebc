"""Who may change a node, and what the proxy dials and sends (specs/security.md: node takeover, open relay).

Pure: the registry and the proxied handshake's rewrite, driven without sockets. The same rules against real
processes are in ``integration_tests/test_security_takeover.py``.
"""

from __future__ import annotations

import pytest

from hypivisor import access, httphead
from hypivisor.registry import Registry, RegistryError, dial_host
from pi_socket.protocol import HeartbeatParams, RegisterParams

SECRET = "the-victims-node-secret-0001"
OTHER = "an-attackers-own-secret-0001"
VICTIM_PEER, EVIL_PEER = "10.0.0.5", "10.0.0.66"


def reg(node_id="victim", machine="box", port=8080, **kw) -> RegisterParams:
    return RegisterParams(id=node_id, machine=machine, cwd="/p", port=port, **kw)


@pytest.fixture
def r() -> Registry:
    reg_ = Registry(30.0)
    reg_.register(reg(node_secret=SECRET), "owner", VICTIM_PEER, now=0)
    return reg_


def refused(call) -> RegistryError:
    with pytest.raises(RegistryError) as e:
        call()
    return e.value


# --------------------------------------------------------------------------- node takeover


@pytest.mark.parametrize("offline", [False, True], ids=["active", "offline"])
def test_no_registry_client_without_the_secret_can_change_a_node(r, offline):
    """Every path a stranger has: the id (no / wrong secret), its machine:port, heartbeat, deregister."""
    if offline:
        r.connection_closed("owner", now=1)
    attempts = [
        lambda: r.register(reg(), "evil", EVIL_PEER, now=2),
        lambda: r.register(reg(node_secret=OTHER), "evil", EVIL_PEER, now=2),
        lambda: r.register(reg(port=1, machine="elsewhere", node_secret=OTHER), "evil", EVIL_PEER, now=2),
        lambda: r.register(reg("intruder"), "evil", EVIL_PEER, now=2),  # evict by machine:port
        lambda: r.heartbeat(HeartbeatParams(id="victim", session_name="pwned"), "evil", now=2),
        lambda: r.deregister("victim", "evil", now=2),
    ]
    for attempt in attempts:
        assert refused(attempt).code in (1002, 1006)
    entry = r.get("victim")
    assert [n.id for n in r.nodes()] == ["victim"] and entry.host == VICTIM_PEER and entry.node.session_name is None
    assert entry.node.status == ("offline" if offline else "active")
    _, issued, _ = r.register(reg(node_secret=SECRET), "owner-again", VICTIM_PEER, now=3)  # the secret still works
    assert issued is None and r.get("victim").owner == "owner-again"


def test_an_offline_nodes_address_cannot_be_freed_from_another_peer_to_claim_its_id(r):
    """Evict-then-claim: while the owner's connection is down (a blip, a bridge restart), a stranger registering a
    new id on the same machine:port used to remove the node, secret and all, and could then register the freed id
    with a secret of its own; the real bridge was refused from then on and the stranger got its prompts."""
    r.connection_closed("owner", now=1)
    err = refused(lambda: r.register(reg("intruder"), "evil", EVIL_PEER, now=2))
    assert err.code == 1002 and "another address" in err.message
    assert refused(lambda: r.register(reg(node_secret=OTHER), "evil", EVIL_PEER, now=2)).code == 1002
    node, _, _ = r.register(reg(node_secret=SECRET), "bridge-back", VICTIM_PEER, now=3)
    assert node.status == "active" and r.get("victim").owner == "bridge-back"


def test_a_pi_restarted_on_the_same_machine_replaces_its_old_node(r):
    """The address's own peer may evict (active or offline): a new pi there reuses a port the old one left."""
    _, _, events = r.register(reg("restarted"), "c2", VICTIM_PEER, now=1)
    assert [(e.event, getattr(e, "id", None)) for e in events] == [("node_removed", "victim"), ("node_joined", None)]
    r.connection_closed("c2", now=2)
    _, _, events = r.register(reg("again"), "c3", "::ffff:" + VICTIM_PEER, now=3)  # the same peer, v4-mapped
    assert [n.id for n in r.nodes()] == ["again"]


def test_an_address_held_from_another_peer_frees_when_that_node_is_swept(r):
    r.connection_closed("owner", now=1)
    refused(lambda: r.register(reg("newcomer"), "c2", EVIL_PEER, now=2))
    r.sweep(now=1 + 30.0 + 0.1)
    node, _, _ = r.register(reg("newcomer"), "c2", EVIL_PEER, now=32)
    assert node.status == "active" and [n.id for n in r.nodes()] == ["newcomer"]


def test_the_issued_secret_goes_only_to_the_first_registration_and_is_stored_hashed():
    r = Registry(30.0)
    _, issued, _ = r.register(reg(), "c1", VICTIM_PEER, now=0, new_secret="s" * 43)
    assert issued == "s" * 43 and r.get("victim").secret != issued.encode()
    _, again, _ = r.register(reg(node_secret="s" * 43), "c2", VICTIM_PEER, now=1, new_secret="t" * 43)
    assert again is None  # presented: nothing new to hand out


# --------------------------------------------------------------------------- open relay: what the proxy dials


@pytest.mark.parametrize(
    ("named", "peer", "dialled"),
    [
        (None, VICTIM_PEER, VICTIM_PEER),
        ("192.0.2.1", VICTIM_PEER, VICTIM_PEER),  # a client-named host elsewhere: ignored
        ("127.0.0.1", VICTIM_PEER, VICTIM_PEER),  # a remote peer cannot aim the proxy at the hypivisor's loopback
        (VICTIM_PEER, VICTIM_PEER, VICTIM_PEER),
        ("127.0.0.1", "::1", "127.0.0.1"),  # a bridge bound to 127.0.0.1 that reached the hypivisor over ::1
        ("::1", "127.0.0.1", "::1"),
        (None, "::ffff:" + VICTIM_PEER, VICTIM_PEER),  # v4-mapped peers are dialled as plain IPv4
        ("192.0.2.1", "::ffff:127.0.0.1", "127.0.0.1"),
    ],
)
def test_the_proxy_dials_the_registering_peer(named, peer, dialled):
    assert dial_host(named, peer) == dialled


# --------------------------------------------------------------------------- open relay: what the agent is sent

TOKEN = "dash-token-secret"


def head(target: str, *headers: tuple[str, str]):
    lines = [f"GET {target} HTTP/1.1", "Host: hv:31415", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers)]  # fmt: skip
    return httphead.parse_head(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_no_carrier_of_the_dashboards_credentials_reaches_the_agent():
    """Each carrier the hypivisor's auth accepts (header, subprotocol, query in any spelling parse_qs decodes),
    plus cookies, is removed; the agent sees the hypivisor's own token once and the browser's other protocols."""
    q = "a=1&token=T1&%74oken=T2&tok%65n=T3&token=&b=2"
    h = head(f"/ws/agent/n?{q}", ("Authorization", f"Bearer {TOKEN}"), ("Cookie", "sid=dash"),
             ("Proxy-Authorization", "Basic eDp5"), ("Origin", "http://localhost:31415"),
             ("Sec-WebSocket-Protocol", f"hypi.v1, {access.encode_protocol_token(TOKEN)}"),
             ("sec-websocket-protocol", "Hypi-Token.VDQ, other.v2"))  # fmt: skip
    assert h.query_param("token") == "T1"  # what auth reads: every spelling below decodes to the name "token"
    out = httphead.rewrite_for_agent(h, "127.0.0.1", 9000, "hv-token").decode("latin-1")
    request_line, *header_lines = out.split("\r\n\r\n")[0].split("\r\n")
    assert request_line == "GET /?a=1&b=2 HTTP/1.1"
    names = [line.split(":", 1)[0].lower() for line in header_lines]
    assert "cookie" not in names and "proxy-authorization" not in names and "origin" not in names
    assert [line for line in header_lines if line.lower().startswith("authorization:")] == [
        "Authorization: Bearer hv-token"
    ]
    for secret in (TOKEN, access.encode_protocol_token(TOKEN), "T1", "T2", "T3", "sid=dash", "eDp5", "VDQ"):
        assert secret not in out
    protocols = [
        line.split(":", 1)[1].strip() for line in header_lines if line.lower().startswith("sec-websocket-protocol")
    ]
    assert protocols == ["hypi.v1", "other.v2"]
    assert "Host: 127.0.0.1:9000" in header_lines and "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" in header_lines


def test_without_a_hypivisor_token_the_agent_gets_no_authorization_at_all():
    h = head("/ws/agent/n?token=x", ("Authorization", "Bearer x"), ("Sec-WebSocket-Protocol", "hypi-token.eA"))
    out = httphead.rewrite_for_agent(h, "::1", 9000, None).decode("latin-1")
    assert "uthorization" not in out and "token" not in out.lower() and "Sec-WebSocket-Protocol" not in out
    assert out.startswith("GET / HTTP/1.1\r\nHost: [::1]:9000\r\n")
