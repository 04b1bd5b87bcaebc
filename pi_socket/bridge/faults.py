"""Fault injection for the hardening loop: ``PI_SOCKET_FAULT=<boundary>`` makes that boundary raise once.

Every outer boundary calls :func:`maybe_fail` first. The hardening skill uses
this to prove that an unanticipated error at a boundary is logged with
``needsHardening: true`` and that the bridge keeps serving.

In the machine service many agents share one process: :func:`scope` gives the current task (and every task it
starts, which copies its context) a set of its own, so a fault armed for one agent fires in that agent only.
"""

from __future__ import annotations

import contextvars
import os

# Boundary names (documented in specs/protocol.md §4).
BOUNDARIES = (
    "stdin.line",  # one line from the shim
    "client.connect",  # a new agent-link connection, before init_state
    "client.message",  # one frame from a client
    "client.send",  # a client's sender task
    "registry.session",  # one connected session with the hypivisor
    "registry.heartbeat",  # one heartbeat
    "shim.request",  # one request to the shim (prompt, abort, ...)
    "session.load",  # loading history/state after a session line
    "agent",  # machine service: one agent's first event line raises out of its bridge (that agent's bridge closes)
)

_armed: set[str] = set()
_scoped: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("pi_socket_faults", default=None)


def _names(boundary: str | None) -> set[str]:
    return {name.strip() for name in (boundary or "").split(",") if name.strip()}


def scope(boundary: str | None) -> set[str]:
    """Arm these boundaries for the current context only (one agent in the machine service); returns the armed
    set, from which a boundary is removed when it fires."""
    armed = _names(boundary)
    _scoped.set(armed)
    return armed


def arm(boundary: str | None) -> None:
    """Arm a boundary (from PI_SOCKET_FAULT at start-up); comma-separated names arm several."""
    _armed.update(_names(boundary))


def arm_from_env() -> None:
    arm(os.environ.get("PI_SOCKET_FAULT"))


def maybe_fail(boundary: str) -> None:
    """Raise RuntimeError the first time an armed boundary is entered."""
    armed = _scoped.get()
    if armed is None:
        armed = _armed
    if boundary in armed:
        armed.discard(boundary)
        raise RuntimeError(f"injected fault at {boundary} (PI_SOCKET_FAULT)")
