"""The dial-back nonce book: which agent links the hypivisor asked a bridge to dial back. Pure: no I/O, no clock.

A browser opens ``/ws/agent/<id>``; when that node's bridge speaks ``dial_back`` the hypivisor makes a nonce here,
sends it down the bridge's own ``/ws`` connection and waits. The bridge opens a new TCP connection to the
hypivisor and names the nonce (``GET /ws/dialback/<nonce>``); :meth:`DialBackBook.claim` decides whether that
connection is the one asked for. The rules:

* a nonce is 128 random bits (``secrets.token_urlsafe(16)``), made only here, for one link;
* it is good **once**, **before its expiry** (``ttl``, at most 10 s), and only while its link still waits
  (:meth:`cancel` when the browser left or the hypivisor gave up and fell back to a direct connection);
* a claim that fails says why: ``unknown`` (never issued here, or forgotten long ago), ``used`` (claimed
  already, or cancelled) or ``expired``; the caller answers it with an HTTP error and logs it;
* entries are stored under the sha256 of the nonce, so a lookup's timing says nothing about a stored nonce;
* bounded: at most ``max_pending`` waiting nonces (``issue`` returns None beyond it: the caller connects
  directly), and at most ``max_spent`` remembered spent ones (oldest dropped first; a forgotten one is
  ``unknown``, still refused).

Each entry carries an opaque ``payload`` (what the caller resumes when the dial-back arrives).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

CAPABILITY = "dial_back"  # what a bridge lists in register.capabilities when it can dial back
DIAL_BACK_TTL = 5.0  # seconds a nonce is good for: the bridge dials within ms; after it the link falls back
MAX_TTL = 10.0
MAX_PENDING = 4096  # waiting links at once (each also holds a browser connection, which the front caps anyway)
MAX_SPENT = 4096  # spent nonces remembered, so a replay is told "used" rather than "unknown"
NONCE_BYTES = 16  # 128 bits


@dataclass
class Pending:
    node_id: str
    expires_at: float
    payload: Any


@dataclass(frozen=True)
class Refused:
    """Why a dial-back was refused: ``reason`` is ``unknown``, ``used`` or ``expired``; ``status`` the HTTP answer."""

    reason: str
    status: int
    message: str
    node_id: str | None = None


def _key(nonce: str) -> bytes:
    return hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).digest()


class DialBackBook:
    """Pending and spent nonces. Drive it from one event loop; every call takes ``now`` (monotonic seconds)."""

    def __init__(self, ttl: float = DIAL_BACK_TTL, max_pending: int = MAX_PENDING, max_spent: int = MAX_SPENT):
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be in (0, {MAX_TTL:g}] seconds")
        self.ttl = float(ttl)
        self.max_pending = max(1, max_pending)
        self.max_spent = max(1, max_spent)
        self._pending: dict[bytes, Pending] = {}
        self._spent: OrderedDict[bytes, tuple[str, str]] = OrderedDict()  # key -> (reason, node id)

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, node_id: str, now: float, payload: Any = None, nonce: str | None = None) -> str | None:
        """A new nonce for one link to ``node_id``, good until ``now + ttl``; None when too many are pending.

        ``nonce`` is for tests only (a known value); it is never reused by the book itself."""
        self.sweep(now)
        if len(self._pending) >= self.max_pending:
            return None
        nonce = nonce or secrets.token_urlsafe(NONCE_BYTES)
        key = _key(nonce)
        if key in self._pending or key in self._spent:
            raise ValueError("nonce already issued")
        self._pending[key] = Pending(node_id, now + self.ttl, payload)
        return nonce

    def claim(self, nonce: str, now: float) -> Pending | Refused:
        """The pending link this nonce was made for (removed: a nonce is good once), or why not."""
        key = _key(nonce)
        entry = self._pending.pop(key, None)
        if entry is None:
            spent = self._spent.get(key)
            if spent is None:
                return Refused("unknown", 404, "unknown dial-back nonce: this hypivisor never asked for it")
            reason, node_id = spent
            if reason == "expired":
                return Refused("expired", 410, "dial-back nonce expired", node_id)
            return Refused("used", 410, "dial-back nonce already used", node_id)
        if now >= entry.expires_at:
            self._spend(key, "expired", entry.node_id)
            return Refused("expired", 410, "dial-back nonce expired", entry.node_id)
        self._spend(key, "used", entry.node_id)
        return entry

    def waiting(self, nonce: str) -> Pending | None:
        """The pending entry of ``nonce`` (left in place), or None."""
        return self._pending.get(_key(nonce))

    def cancel(self, nonce: str, now: float) -> Pending | None:
        """The link no longer waits (browser gone, fell back to direct): a later claim is refused, as expired
        when the nonce's time is up, else as used."""
        key = _key(nonce)
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._spend(key, "expired" if now >= entry.expires_at else "used", entry.node_id)
        return entry

    def sweep(self, now: float) -> list[Pending]:
        """Move expired pending nonces to the spent list; returns their entries (their links fall back)."""
        gone = [key for key, entry in self._pending.items() if now >= entry.expires_at]
        out = []
        for key in gone:
            entry = self._pending.pop(key)
            self._spend(key, "expired", entry.node_id)
            out.append(entry)
        return out

    def _spend(self, key: bytes, reason: str, node_id: str) -> None:
        self._spent[key] = (reason, node_id)
        self._spent.move_to_end(key)
        while len(self._spent) > self.max_spent:
            self._spent.popitem(last=False)


def dial_path(nonce: str) -> str:
    """The path a bridge requests to hand the hypivisor its dial-back connection."""
    return DIALBACK_PREFIX + nonce


DIALBACK_PREFIX = "/ws/dialback/"
UPGRADE_TOKEN = "hypi-dialback"  # the HTTP Upgrade protocol name of a dial-back connection


def nonce_of(path: str) -> str | None:
    """The nonce of ``/ws/dialback/<nonce>``, '' when missing, None for other paths."""
    if not path.startswith(DIALBACK_PREFIX):
        return None
    rest = path[len(DIALBACK_PREFIX) :]
    return rest if "/" not in rest and len(rest) <= 128 else ""


def switching_response() -> bytes:
    """The hypivisor's answer to an accepted dial-back: the connection now carries the browser's agent link."""
    head = f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {UPGRADE_TOKEN}\r\nConnection: Upgrade\r\n\r\n"
    return head.encode("ascii")


# -- cluster mode: a dial-back to another hypivisor (specs/cluster.md §7) --------------------------------------------
# The browser's hypivisor (B) makes the nonce in its own book and asks the agent's owner (A) over the backplane
# ``{op: "dial_back", nonce, url, expires_in}``; A pushes the event with that ``url`` down the bridge's registry
# connection and answers B once the bridge said how it went (``dial_back_result``), so a bridge that cannot dial B
# costs B no wait: B splices through A at once.
URL_CAPABILITY = "dial_back_url"  # the bridge honours the event's ``url`` and answers with ``dial_back_result``
MAX_URL = 2048
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class ForwardRequest:
    nonce: str
    url: str
    expires_in: float


def forward_request(request: Any) -> ForwardRequest:
    """The owner's reading of another hypivisor's ``{op: "dial_back", …}``; ValueError says what is wrong."""
    if not isinstance(request, dict):
        raise ValueError("a dial_back request is an object")
    nonce, url, ttl = request.get("nonce"), request.get("url"), request.get("expires_in", DIAL_BACK_TTL)
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 128 or not set(nonce) <= _NONCE_CHARS:
        raise ValueError("dial_back needs a nonce (16 to 128 URL-safe characters)")
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")) or len(url) > MAX_URL:
        raise ValueError(f"dial_back needs the asking hypivisor's ws:// or wss:// URL (at most {MAX_URL} characters)")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL:
        raise ValueError(f"dial_back expires_in must be in (0, {MAX_TTL:g}] seconds")
    return ForwardRequest(nonce, url, float(ttl))


def forward_refusal(capabilities: Any, has_connection: bool) -> str | None:
    """Why the owner cannot forward a dial-back to this node's bridge (answered at once, so the asking hypivisor
    splices through the owner without waiting), or None. A bridge that does not list ``dial_back_url`` would dial its
    connected hypivisor with a nonce that hypivisor never issued: it is never asked."""
    caps = capabilities or ()
    if CAPABILITY not in caps:
        return "the agent's bridge does not dial back"
    if URL_CAPABILITY not in caps:
        return "the agent's bridge cannot dial back to another hypivisor (an older pi-socket)"
    if not has_connection:
        return "the agent's registry connection is gone"
    return None


class ForwardBook:
    """The dial-backs an owner forwarded and waits to hear about: nonce (stored hashed) → (the registry connection
    the event went to, what to resume). A report counts only from that connection. Bounded."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max(1, max_pending)
        self._pending: dict[bytes, tuple[Any, Any]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, nonce: str, conn: Any, payload: Any) -> bool:
        """False when too many wait or the nonce is already waiting."""
        key = _key(nonce)
        if len(self._pending) >= self.max_pending or key in self._pending:
            return False
        self._pending[key] = (conn, payload)
        return True

    def settle(self, nonce: str, conn: Any) -> Any:
        """The payload of a waiting nonce when ``conn`` is the connection it went to (removed), else None."""
        key = _key(nonce)
        entry = self._pending.get(key)
        if entry is None or entry[0] != conn:
            return None
        del self._pending[key]
        return entry[1]

    def drop(self, nonce: str) -> None:
        self._pending.pop(_key(nonce), None)
