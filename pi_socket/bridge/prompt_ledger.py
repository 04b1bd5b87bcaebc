"""Prompt ids: each id reaches pi at most once, and every prompt frame gets one answer.

Invariant 2 (nothing typed is lost or doubled): Pi-DE shows a prompt pending
until it is acknowledged and resends it after a reconnect. The ledger decides,
with no I/O, what to do with each frame:

* a new id → ``SEND`` (state ``pending``) and the caller hands it to the shim;
* a repeat while pending → ``WAIT``: the caller gets its ack when the first
  copy is confirmed, marked ``duplicate``;
* a repeat after the ack → ``ACK_DUPLICATE`` at once, nothing sent to pi;
* after a failure the id is forgotten, so a retry with the same id is sent.

Memory is bounded: the oldest finished ids are forgotten first (a client does
not resend a prompt thousands of prompts later).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

W = TypeVar("W", bound=Hashable)

DEFAULT_CAPACITY = 4096


class Decision(enum.Enum):
    SEND = "send"
    WAIT = "wait"
    ACK_DUPLICATE = "ack_duplicate"


class PromptLedger(Generic[W]):
    """Tracks prompt ids; ``W`` is whatever identifies a waiting requester (a client, a future)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._done: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, list[W]] = {}

    def submit(self, prompt_id: str, waiter: W) -> Decision:
        """Record one incoming prompt frame and say what to do with it."""
        if prompt_id in self._done:
            self._done.move_to_end(prompt_id)
            return Decision.ACK_DUPLICATE
        if prompt_id in self._pending:
            self._pending[prompt_id].append(waiter)
            return Decision.WAIT
        self._pending[prompt_id] = [waiter]
        return Decision.SEND

    def confirm(self, prompt_id: str) -> list[W]:
        """pi took the prompt: remember the id; returns the waiters (first one = the original sender)."""
        waiters = self._pending.pop(prompt_id, [])
        self._done[prompt_id] = None
        self._done.move_to_end(prompt_id)
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)
        return waiters

    def fail(self, prompt_id: str) -> list[W]:
        """Handing the prompt to pi failed: forget it so a retry is sent again; returns the waiters."""
        return self._pending.pop(prompt_id, [])

    def is_pending(self, prompt_id: str) -> bool:
        return prompt_id in self._pending

    def is_done(self, prompt_id: str) -> bool:
        return prompt_id in self._done
