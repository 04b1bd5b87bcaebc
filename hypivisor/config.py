"""Command line and environment: everything the daemon is told, parsed in one place. Pure."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pi_socket.handshake import parse_allowed_origins
from pi_socket.locations import default_dashboard_dir

DEFAULT_PORT = 31415
DEFAULT_DASHBOARD_PORT = 5180
DEFAULT_TTL = 30.0
DEFAULT_SPAWN_TIMEOUT = 30.0

ENV_HELP = """\
environment:
  HYPI_TOKEN             shared secret for every WebSocket endpoint (Bearer header,
                         hypi-token.<base64url> subprotocol or ?token=); unset = the token file's,
                         made at the first start (see --no-token)
  HYPI_TOKEN_FILE        the token file (default: $XDG_CONFIG_HOME/hyper-pi/token, else
                         ~/.config/hyper-pi/token; 0600); this machine's bridges read it too
  HYPI_ALLOWED_ORIGINS   extra browser origins allowed to open WebSockets (comma-separated, exact)
  HYPI_SPAWN_COMMAND     shell template instead of tmux for spawn_agent, e.g. "cd {path} && pi"
                         ({path} and {session} are shell-quoted)
  HYPI_DASHBOARD_DIR     built Pi-DE to serve (default: pi_de/dist in the repository)
  HYPI_SPAWN_TIMEOUT     seconds spawn_agent waits for the new agent to register (default 30)
  HYPI_STATE_DIR         where the inbox (SQLite) and other kept state live
                         (default: $XDG_STATE_HOME/hyper-pi, else ~/.local/state/hyper-pi)
  HYPI_NATS_URL          NATS servers for cluster mode, comma-separated (as --nats): hypivisors on
                         one NATS cluster share their roster and agent links (specs/cluster.md, "Built")
  HYPI_NATS_SITE         cluster mode: the site's name (default main)
  HYPI_NATS_LEASE_TTL    cluster mode: seconds a stopped hypivisor's agents stay listed (default 45)
  HYPI_NATS_ADVERTISE    cluster mode: the host other hypivisors dial for agent links (default --host)
  HYPI_NATS_ADVERTISE_WS cluster mode: this hypivisor's /ws URL as bridges list it (dial-backs come here
                         only from bridges whose HYPIVISOR_WS names it; default ws://<advertised host>:<port>/ws)
  HYPI_CLUSTER_TOKEN     cluster mode: the hypivisor-to-hypivisor token for links through another hypivisor
                         (the same on all; never a dashboard's token; default: HYPI_TOKEN is sent)
  HYPI_PEERS             other hypivisors' dashboard origins, comma-separated (as --peer, at most 16):
                         Pi-DE moves there when this one is lost; each is also an allowed Origin here
"""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    node_ttl: float = DEFAULT_TTL
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    log_level: str = "info"
    token: str | None = None
    no_token: bool = False  # --no-token: no token file, no auth (loopback-only agent links, spawn on loopback only)
    token_file: Path | None = None  # where the token came from when it is the token file's
    token_created: bool = False  # the token file was made by this start
    allow_unauthenticated_spawn: bool = False
    allow_unauthenticated_remote: bool = False
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    spawn_command: str | None = None
    dashboard_dir: Path = field(default_factory=default_dashboard_dir)
    spawn_timeout: float = DEFAULT_SPAWN_TIMEOUT
    dashboard_queue: int = 1024
    dashboard_queue_bytes: int = 8 * 1024 * 1024
    max_connections: int = 1024
    max_connections_per_peer: int = 256
    rate_limit: float = 500.0  # /ws frames per second per connection (burst 10x); 0 = off
    state_dir: Path | None = None  # None: no kept state (in-memory inbox), as in unit tests
    tls_cert: Path | None = None  # with tls_key: the dashboard port serves https/wss (specs/push.md §5)
    tls_key: Path | None = None
    # default budgets per day (specs/budgets.md): scope → (USD, tokens); a dashboard's budget replaces one
    budget_defaults: dict[str, tuple[float | None, int | None]] = field(default_factory=dict)
    # cluster mode (specs/cluster.md): the NATS servers; () = one process, NATS never imported
    nats_urls: tuple[str, ...] = ()
    # Pi-DE fail-over (specs/cluster.md §8): the other hypivisors' dashboard origins, sent in ``init`` to
    # authenticated connections and allowed as browser Origins here (they are in ``allowed_origins`` too)
    peers: tuple[str, ...] = ()


NATS_SCHEMES = ("nats", "tls", "ws", "wss")
MAX_NATS_URLS = 32


def parse_nats_urls(text: str) -> tuple[str, ...]:
    """``nats://host:4222,nats://b:4222`` → the URLs, each checked: a NATS scheme (nats, tls, ws, wss), a host,
    an optional port, nothing else (a path, query or fragment is a typo); ValueError says which one is wrong."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    if not urls:
        raise ValueError("--nats / HYPI_NATS_URL is empty: give one or more URLs like nats://host:4222")
    if len(urls) > MAX_NATS_URLS:
        raise ValueError(f"--nats / HYPI_NATS_URL lists {len(urls)} servers; at most {MAX_NATS_URLS}")
    for url in urls:
        hint = f"--nats / HYPI_NATS_URL: {url!r} is not a NATS server URL (expected nats://host:4222)"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"{hint}: bad port") from None
        if parts.scheme not in NATS_SCHEMES:
            raise ValueError(f"{hint}: the scheme must be one of {', '.join(NATS_SCHEMES)}")
        if not parts.hostname:
            raise ValueError(f"{hint}: no host")
        if port == 0:
            raise ValueError(f"{hint}: port 0")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{hint}: a server URL has no path, query or fragment")
    return urls


MAX_PEERS = 16


def check_peer(entry: str) -> str:
    """One peer's dashboard origin, ``http(s)://host[:port]`` (a trailing slash is forgiven), returned as the exact
    origin a browser sends; ValueError names the entry."""
    origin = entry.strip().rstrip("/")
    hint = f"--peer / HYPI_PEERS entry {entry.strip()!r}"
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{hint} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{hint} must start with http:// or https:// (a dashboard origin, as the browser shows it)")
    if not parts.hostname:
        raise ValueError(f"{hint} names no host")
    if port == 0:
        raise ValueError(f"{hint}: port 0")
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc or any(c.isspace() for c in origin):
        raise ValueError(f"{hint} must be an origin only (scheme, host, port), like https://b.example:5180")
    # as a browser spells it in Origin: lower case, no default port
    origin = origin.lower()
    if (parts.scheme, port) in (("http", 80), ("https", 443)):
        origin = origin.rsplit(":", 1)[0]
    return origin


def parse_peers(entries: Sequence[str]) -> tuple[str, ...]:
    """``--peer`` values (each may hold several, comma-separated) or ``HYPI_PEERS`` → the origins in order,
    duplicates dropped, empty entries skipped, at most ``MAX_PEERS``; ValueError names a bad entry."""
    peers: list[str] = []
    for value in entries:
        for raw in value.split(","):
            if raw.strip():
                origin = check_peer(raw)
                if origin not in peers:
                    peers.append(origin)
    if len(peers) > MAX_PEERS:
        raise ValueError(f"--peer / HYPI_PEERS names {len(peers)} hypivisors; at most {MAX_PEERS}")
    return tuple(peers)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hypivisor",
        description="Hyper-Pi hypivisor: registry of running pi agents, push events, "
        "WebSocket proxy to each agent, spawn in tmux, and the built Pi-DE dashboard.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind both ports to (default: %(default)s)")
    p.add_argument("-p", "--port", type=_port, default=DEFAULT_PORT, help="registry/proxy port (default: %(default)s)")
    p.add_argument(
        "-t", "--node-ttl", type=_positive(float), default=DEFAULT_TTL,
        help="seconds an offline agent stays listed; silent 'active' agents are removed after 3x (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--dashboard-port", type=_port, default=DEFAULT_DASHBOARD_PORT,
        help="port serving the built Pi-DE (plus /ws and /ws/agent/* same-origin); 0 disables (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="level of ~/.pi/logs/hypivisor.jsonl (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--no-token", action="store_true",
        help="run without a token: neither read nor make the token file; only this machine may drive agents and "
        "spawn needs a loopback --host (the behaviour before the token file)",
    )  # fmt: skip
    p.add_argument(
        "--allow-unauthenticated-spawn", action="store_true",
        help="allow spawn_agent without HYPI_TOKEN while bound to a non-loopback address (dangerous)",
    )  # fmt: skip
    p.add_argument(
        "--allow-unauthenticated-remote", action="store_true",
        help="without HYPI_TOKEN, let other machines open /ws/agent/<id> (drive agents); by default only "
        "loopback clients may while no token is set (dangerous)",
    )  # fmt: skip
    p.add_argument(
        "--dashboard-queue", type=_positive(int), default=1024,
        help="events queued per dashboard before it is disconnected as too slow (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--dashboard-queue-bytes", type=_positive(int), default=8 * 1024 * 1024,
        help="bytes queued per /ws connection: a dashboard whose pushed events pass it is disconnected as too "
        "slow, a client that does not read its responses is no longer read from (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-connections", type=_positive(int), default=1024,
        help="open connections on both ports together; above it new ones get HTTP 503 (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-connections-per-peer", type=_positive(int), default=256,
        help="open connections from one address; the last eighth of --max-connections is kept for addresses "
        "holding fewer than 8, so one peer cannot lock a dashboard out (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--rate-limit", type=float, default=500.0,
        help="/ws frames per second per connection (bursts of 10x allowed); above it a request is answered "
        "1008 RATE_LIMITED and the connection stays open; 0 disables (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--tls-cert", default=None, metavar="PEM",
        help="certificate chain (PEM) for the dashboard port: it then serves https and wss, which phones need "
        "for notifications and installing Pi-DE (with --tls-key; the registry port stays plain)",
    )  # fmt: skip
    p.add_argument("--tls-key", default=None, metavar="PEM", help="private key (PEM) of --tls-cert")
    p.add_argument(
        "--nats", default=None, metavar="URLS",
        help="cluster mode (specs/cluster.md): the NATS servers, comma-separated, e.g. "
        "nats://a:4222,nats://b:4222: share the roster and agent links with the other hypivisors there "
        "(default: HYPI_NATS_URL, else one process, no broker)",
    )  # fmt: skip
    p.add_argument(
        "--peer", action="append", default=None, metavar="ORIGIN",
        help="another hypivisor's dashboard origin (e.g. https://b.example:5180), repeatable: Pi-DE moves there "
        "when this one is lost, and that origin may open WebSockets here (default: HYPI_PEERS, else none)",
    )  # fmt: skip
    p.add_argument(
        "--state-dir", default=None,
        help="directory of the hypivisor's kept state: the inbox and read markers (SQLite) "
        "(default: HYPI_STATE_DIR, else $XDG_STATE_HOME/hyper-pi, else ~/.local/state/hyper-pi)",
    )  # fmt: skip
    for scope, what in (("agent", "each agent"), ("folder", "each folder"), ("day", "all agents together")):
        p.add_argument(
            f"--budget-{scope}-usd", type=_positive(float), default=None, metavar="USD",
            help=f"default budget of {what} per day, in USD: at 80 %% an inbox item, at 100 %% the run is "
            "aborted and prompts held (a budget set in the dashboard replaces it; default: none)",
        )  # fmt: skip
        p.add_argument(
            f"--budget-{scope}-tokens", type=_positive(int), default=None, metavar="N",
            help=f"default budget of {what} per day, in tokens (default: none)",
        )  # fmt: skip
    return p


def default_state_dir(env: Mapping[str, str]) -> Path:
    if env.get("HYPI_STATE_DIR"):
        return Path(env["HYPI_STATE_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or os.path.join(home_dir(env), ".local", "state")
    return Path(base) / "hyper-pi"


def parse(argv: Sequence[str] | None, env: Mapping[str, str]) -> Config:
    """Combine argv and environment into a Config (argparse exits 2 on bad arguments)."""
    args = build_parser().parse_args(argv)
    timeout = env.get("HYPI_SPAWN_TIMEOUT")
    if args.no_token and env.get("HYPI_TOKEN"):
        raise ValueError("--no-token and HYPI_TOKEN contradict each other: unset one")
    # an empty HYPI_NATS_URL is unset (one process); an empty --nats is a mistake
    nats = args.nats if args.nats is not None else (env.get("HYPI_NATS_URL") or "").strip() or None
    peers = parse_peers(args.peer if args.peer is not None else [env.get("HYPI_PEERS") or ""])
    return Config(
        host=args.host,
        port=args.port,
        node_ttl=args.node_ttl,
        dashboard_port=args.dashboard_port,
        log_level=args.log_level,
        token=env.get("HYPI_TOKEN") or None,
        no_token=args.no_token,
        allow_unauthenticated_spawn=args.allow_unauthenticated_spawn,
        allow_unauthenticated_remote=args.allow_unauthenticated_remote,
        # a peer's dashboard is allowed here: the page it served fails over to this hypivisor (specs/security.md T1)
        allowed_origins=frozenset(parse_allowed_origins(env.get("HYPI_ALLOWED_ORIGINS"))) | frozenset(peers),
        spawn_command=env.get("HYPI_SPAWN_COMMAND") or None,
        dashboard_dir=Path(env["HYPI_DASHBOARD_DIR"]) if env.get("HYPI_DASHBOARD_DIR") else default_dashboard_dir(),
        spawn_timeout=float(timeout) if timeout else DEFAULT_SPAWN_TIMEOUT,
        dashboard_queue=args.dashboard_queue,
        dashboard_queue_bytes=args.dashboard_queue_bytes,
        max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer,
        rate_limit=max(0.0, args.rate_limit),
        state_dir=Path(args.state_dir).expanduser() if args.state_dir else default_state_dir(env),
        tls_cert=Path(args.tls_cert).expanduser() if args.tls_cert else None,
        tls_key=Path(args.tls_key).expanduser() if args.tls_key else None,
        budget_defaults={
            scope: (getattr(args, f"budget_{scope}_usd"), getattr(args, f"budget_{scope}_tokens"))
            for scope in ("agent", "folder", "day")
            if getattr(args, f"budget_{scope}_usd") is not None or getattr(args, f"budget_{scope}_tokens") is not None
        },
        nats_urls=parse_nats_urls(nats) if nats is not None else (),
        peers=peers,
    )


def home_dir(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("HOME") or os.path.expanduser("~")
