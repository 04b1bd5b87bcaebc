"""Fault injection for the hardening loop: ``PI_SOCKET_FAULT=<boundary>`` makes that boundary raise once.

Every outer boundary calls :func:`maybe_fail` first. The hardening skill uses
this to prove that an unanticipated error at a boundary is logged with
``needsHardening: true`` and that the bridge keeps serving.
"""

from __future__ import annotations

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
)

_armed: set[str] = set()


def arm(boundary: str | None) -> None:
    """Arm a boundary (from PI_SOCKET_FAULT at start-up); comma-separated names arm several."""
    for name in (boundary or "").split(","):
        if name.strip():
            _armed.add(name.strip())


def arm_from_env() -> None:
    arm(os.environ.get("PI_SOCKET_FAULT"))


def maybe_fail(boundary: str) -> None:
    """Raise RuntimeError the first time an armed boundary is entered."""
    if boundary in _armed:
        _armed.discard(boundary)
        raise RuntimeError(f"injected fault at {boundary} (PI_SOCKET_FAULT)")
