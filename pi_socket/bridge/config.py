"""Bridge settings, read once from the environment (documented in specs/protocol.md §4).

Kept pure (``from_env`` takes a mapping) so tests can build a config without
touching ``os.environ``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pi_socket import handshake, hypivisors
from pi_socket.protocol import TMUX_SESSION_PATTERN

DEFAULT_PORT = 8080
PORT_SPAN = 100  # ports tried after PI_SOCKET_PORT
DEFAULT_HOST = "127.0.0.1"
DEFAULT_HYPIVISOR_WS = "ws://localhost:31415/ws"
DASHBOARD_DEV_PORT = 5180
# Incoming frame cap. Ten 5 MiB attachments are ~67 MiB of base64, so 16 MiB
# would refuse legitimate prompts; 64 MiB keeps one frame bounded (websockets
# closes the connection with 1009 above it) while allowing realistic uploads.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# A compressed message may inflate to INFLATE_FLOOR_BYTES + INFLATE_RATIO x its compressed size (and never past
# MAX_FRAME_BYTES): a deflate bomb is refused (1009) after at most that much memory, not 64 MiB per message.
INFLATE_FLOOR_BYTES = 8 * 1024 * 1024
INFLATE_RATIO = 64
CLIENT_QUEUE_FRAMES = 1000
CLIENT_QUEUE_BYTES = 32 * 1024 * 1024
HEARTBEAT_FALLBACK_S = 10.0
RECONNECT_FIRST_S = 1.0
RECONNECT_CAP_S = 10.0
# Incoming frames per second per client (bursts of 10x); above it a frame is answered 1008, not run.
RATE_LIMIT = 200.0
# Keepalive on the agent port: a client whose link died without a close frame (network drop,
# black-holed proxy hop) is dropped within ping interval + (interval + 1) timeout + 1 s close
# wait = 10 s by default, i.e. inside the registry's default heartbeat interval (TTL 30 s / 3).
KEEPALIVE_S = 4.0


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(env.get(key, "").strip() or default)
    except ValueError:
        return default


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    """An integer setting; a malformed value falls back to the default rather than crashing pi's helper."""
    try:
        return int(env.get(key, "") or default)
    except ValueError:
        return default


def _port(env: Mapping[str, str], key: str) -> int | None:
    """A TCP port setting, or None when unset or out of range."""
    value = _int(env, key, 0)
    return value if 0 < value < 65536 else None


@dataclass(frozen=True)
class BridgeConfig:
    port: int = DEFAULT_PORT
    preferred_port: int | None = None
    # PI_SOCKET_ADVERTISE_PORT: the port register names when it is not the bound one (a published port)
    advertise_port: int | None = None
    host: str = DEFAULT_HOST
    hypivisor_ws: str = DEFAULT_HYPIVISOR_WS
    # HYPIVISOR_WS as a list (pi_socket.hypivisors): the registry URLs in the order to try; () when off or unusable
    hypivisors: tuple[str, ...] = (DEFAULT_HYPIVISOR_WS,)
    registry_error: str | None = None  # why HYPIVISOR_WS cannot be used (the bridge then runs standalone and says so)
    token: str | None = None
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    node_id: str | None = None
    spawn_id: str | None = None  # PI_SOCKET_SPAWN_ID: set by the hypivisor's spawn_agent, sent back in register
    tmux_session: str | None = None  # PI_SOCKET_TMUX_SESSION: the tmux session a spawn started pi in (reported)
    node_secret: str | None = None  # PI_SOCKET_NODE_SECRET: made by the shim once per pi, proves the node id is ours
    reconnect_first_s: float = RECONNECT_FIRST_S
    client_queue_frames: int = CLIENT_QUEUE_FRAMES
    client_queue_bytes: int = CLIENT_QUEUE_BYTES
    max_frame_bytes: int = MAX_FRAME_BYTES
    inflate_floor_bytes: int = INFLATE_FLOOR_BYTES
    inflate_ratio: int = INFLATE_RATIO
    rate_limit: float = RATE_LIMIT
    keepalive_s: float = KEEPALIVE_S
    fault: str | None = None
    machine: str = field(default_factory=socket.gethostname)
    hello_timeout_s: float = 3.0
    registry_enabled: bool = True
    # watchdogs (specs/watchdogs.md)
    stall_s: float = 300.0
    loop_n: int = 3
    retry_k: int = 5
    context_pct: float = 90.0
    cwd: str | None = None  # pi's working directory when known before the hello (machine service: the attach line)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BridgeConfig:
        """Build settings from environment variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        preferred = _int(env, "PI_SOCKET_PREFERRED_PORT", 0) or None
        reconnect_ms = _int(env, "PI_SOCKET_RECONNECT_MS", int(RECONNECT_FIRST_S * 1000))
        registry_url = env.get("HYPIVISOR_WS", DEFAULT_HYPIVISOR_WS).strip()
        try:
            registries, registry_error = hypivisors.parse(registry_url), None
        except hypivisors.HypivisorListError as exc:
            registries, registry_error = (), str(exc)
        return cls(
            port=_int(env, "PI_SOCKET_PORT", DEFAULT_PORT),
            preferred_port=preferred,
            advertise_port=_port(env, "PI_SOCKET_ADVERTISE_PORT"),
            host=env.get("PI_SOCKET_HOST", "").strip() or DEFAULT_HOST,
            hypivisor_ws=registry_url,
            token=env.get("HYPI_TOKEN") or None,
            allowed_origins=allowed_origins(
                env.get("HYPI_ALLOWED_ORIGINS", ""), *(_dashboard_port(u) for u in registries or (registry_url,))
            ),
            node_id=env.get("PI_SOCKET_NODE_ID") or None,
            spawn_id=(env.get("PI_SOCKET_SPAWN_ID") or "")[:128] or None,
            tmux_session=_tmux_session(env.get("PI_SOCKET_TMUX_SESSION")),
            node_secret=_secret(env.get("PI_SOCKET_NODE_SECRET")),
            reconnect_first_s=max(0.01, reconnect_ms / 1000.0),
            client_queue_frames=max(1, _int(env, "PI_SOCKET_CLIENT_QUEUE_FRAMES", CLIENT_QUEUE_FRAMES)),
            client_queue_bytes=max(1024, _int(env, "PI_SOCKET_CLIENT_QUEUE_BYTES", CLIENT_QUEUE_BYTES)),
            max_frame_bytes=max(64 * 1024, _int(env, "PI_SOCKET_MAX_FRAME_BYTES", MAX_FRAME_BYTES)),
            rate_limit=max(0, _int(env, "PI_SOCKET_RATE_LIMIT", int(RATE_LIMIT))),
            keepalive_s=max(0.2, _float(env, "PI_SOCKET_KEEPALIVE", KEEPALIVE_S)),
            fault=env.get("PI_SOCKET_FAULT") or None,
            hypivisors=registries,
            registry_error=registry_error,
            registry_enabled=bool(registries),
            stall_s=max(1.0, _float(env, "PI_SOCKET_STALL_S", 300.0)),
            loop_n=max(2, _int(env, "PI_SOCKET_LOOP_REPEATS", 3)),
            retry_k=max(1, _int(env, "PI_SOCKET_RETRY_STORM", 5)),
            context_pct=min(100.0, max(1.0, _float(env, "PI_SOCKET_CONTEXT_ALERT_PCT", 90.0))),
            # the machine's name on the roster; the machine service uses the same variable (specs/machines.md)
            machine=(env.get("PI_SOCKET_MACHINE") or "").strip()[:255] or socket.gethostname(),
        )

    def keepalive(self) -> tuple[float, float, float]:
        """(ping interval, ping timeout, close timeout) for the agent server."""
        return self.keepalive_s, self.keepalive_s + 1.0, 1.0

    def candidate_ports(self) -> list[int]:
        """Ports to try in order: the preferred one (a restart keeps its URL), then PORT..PORT+100.

        Port 0 means "any free port" (tests use it)."""
        if self.port == 0:
            base = [0]
        else:
            base = [p for p in range(self.port, self.port + PORT_SPAN + 1) if 0 < p < 65536]
        if self.preferred_port and self.preferred_port not in base[:1]:
            return [self.preferred_port] + [p for p in base if p != self.preferred_port]
        return base


def _dashboard_port(registry_url: str) -> int:
    """The hypivisor serves Pi-DE on its own port, so that port's origins may open the agent link directly."""
    try:
        return urlsplit(registry_url).port or 31415
    except ValueError:
        return 31415


def allowed_origins(extra: str, *dashboard_ports: int) -> frozenset[str]:
    """Loopback/hostname origins of the dashboard (on each hypivisor's port, 31415 when none is given) and the Vite
    dev server (5180), plus the comma-separated HYPI_ALLOWED_ORIGINS (exact match), as specs/protocol.md §1 says."""
    names = {name.lower() for name in (socket.gethostname(), socket.getfqdn()) if name}
    ports = {DASHBOARD_DEV_PORT, *(dashboard_ports or (31415,))}
    return frozenset(handshake.default_origins(names, ports) | handshake.parse_allowed_origins(extra))


def _tmux_session(value: str | None) -> str | None:
    """PI_SOCKET_TMUX_SESSION when it is a name a spawn makes (it is shown as `tmux attach -t <name>`), else None."""
    return value if value and re.fullmatch(TMUX_SESSION_PATTERN, value) else None


def _secret(value: str | None) -> str | None:
    """The shim's node secret when it is usable as ``register.node_secret`` (16-128 characters), else None:
    the hypivisor then issues one at the first registration."""
    return value if value and 16 <= len(value) <= 128 else None
