"""A list of hypivisors to register with, and the order to try them in (specs/cluster.md §8).

``HYPIVISOR_WS`` holds one registry URL or several, comma-separated
(``ws://a:31415/ws,ws://b:31415/ws``). Bridges and the machine service connect to the first that answers, stay on
it while it works, and on losing it move to the next: the first attempt at once, later ones after the usual
backoff (one sequence across the whole list, reset by a registration). One URL behaves exactly as before: every
attempt after a failure waits the backoff.

No I/O here: the parser and the order are pure and unit-tested; the clients do the connecting.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from pi_socket.bridge.backoff import Backoff

MAX_HYPIVISORS = 16
OFF = ("", "off", "none", "0")  # registration disabled


class HypivisorListError(ValueError):
    """``HYPIVISOR_WS`` cannot be used; the message names the entry at fault."""


def disabled(value: str) -> bool:
    """Whether ``HYPIVISOR_WS`` turns registration off (``off``, ``none``, ``0`` or empty)."""
    return value.strip().lower() in OFF


def check_url(url: str) -> str:
    """One registry URL: ``ws://`` or ``wss://`` with a host and a valid port; returned stripped."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError as exc:
        raise HypivisorListError(f"HYPIVISOR_WS entry {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise HypivisorListError(f"HYPIVISOR_WS entry {url!r} must start with ws:// or wss://")
    if not parts.hostname:
        raise HypivisorListError(f"HYPIVISOR_WS entry {url!r} names no host")
    if any(c.isspace() for c in url):
        raise HypivisorListError(f"HYPIVISOR_WS entry {url!r} contains white space")
    return url


def parse(value: str) -> tuple[str, ...]:
    """The registry URLs of ``HYPIVISOR_WS`` in order, duplicates dropped; ``()`` when registration is off.

    Empty entries (a trailing comma) are skipped. HypivisorListError names a bad entry, or says there are more
    than ``MAX_HYPIVISORS``."""
    if disabled(value):
        return ()
    urls: list[str] = []
    for raw in value.split(","):
        if not raw.strip():
            continue
        url = check_url(raw)
        if url not in urls:
            urls.append(url)
    if not urls:
        raise HypivisorListError(f"HYPIVISOR_WS {value!r} names no hypivisor")
    if len(urls) > MAX_HYPIVISORS:
        raise HypivisorListError(f"HYPIVISOR_WS names {len(urls)} hypivisors; at most {MAX_HYPIVISORS}")
    return tuple(urls)


def _identity(url: str) -> tuple[str, str, int, str, str] | None:
    """What makes two registry URLs the same hypivisor: scheme, host (any case), port (the scheme's default when
    absent), path (a trailing slash forgiven) and query; None for anything that is not a ws/wss URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except (ValueError, AttributeError):
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname or parts.username is not None or parts.fragment:
        return None
    return scheme, parts.hostname, port or (443 if scheme == "wss" else 80), parts.path.rstrip("/"), parts.query


def listed(url: object, urls: Sequence[str]) -> str | None:
    """The entry of ``urls`` (this client's own ``HYPIVISOR_WS``) that names the same hypivisor as ``url``, or None.

    A cross-hypivisor dial-back (specs/cluster.md §7) goes only to a hypivisor of the client's own list, and to the
    list's spelling of it (its scheme, its host): a hypivisor that asks for a dial-back elsewhere cannot make the
    client carry its token to an address the user did not configure."""
    if not isinstance(url, str) or len(url) > 2048:
        return None
    wanted = _identity(url)
    if wanted is None:
        return None
    return next((entry for entry in urls if _identity(entry) == wanted), None)


class Failover:
    """Which hypivisor to try next, and after what delay: a pure state machine.

    ``url`` is the one to connect to now. ``succeeded`` after a registration keeps it (stickiness) and resets the
    backoff. ``failed`` after a refused attempt or a lost connection moves to the next URL (wrapping) and returns
    the delay before trying it: 0 for the first failure since the last success when there is another URL to go to,
    otherwise the backoff's next delay."""

    def __init__(self, urls: Sequence[str], first_s: float = 1.0, cap_s: float = 10.0) -> None:
        if not urls:
            raise ValueError("Failover needs at least one URL")
        self.urls = tuple(urls)
        self.index = 0
        self.backoff = Backoff(first_s, cap_s)
        self.failures = 0  # since the last success (the backoff's own count skips the immediate fail-over)

    @property
    def url(self) -> str:
        return self.urls[self.index]

    def succeeded(self) -> None:
        self.failures = 0
        self.backoff.reset()

    def failed(self) -> float:
        self.failures += 1
        if len(self.urls) > 1:
            self.index = (self.index + 1) % len(self.urls)
            if self.failures == 1:
                return 0.0
        return self.backoff.next_delay()

    def ordered(self) -> tuple[str, ...]:
        """Every URL, the current one first (what a pi started from here gets as its ``HYPIVISOR_WS``)."""
        return self.urls[self.index :] + self.urls[: self.index]

    def value(self) -> str:
        """``ordered`` as an ``HYPIVISOR_WS`` value."""
        return ",".join(self.ordered())
