"""One base for every ``(code, message)`` refusal, and its one conversion to a wire error. Pure.

The code is a :class:`pi_socket.protocol.ErrorCode` value, and its range says whose fault it was: -32xxx the
caller sent something wrong, 1xxx the request was fine but the world said no (path, spawn, agent, policy),
2xxx the server failed. Each component keeps its own subclass (``RegistryError``, ``PathError``,
``SpawnError``, ``RpcFailure``, the bridge's ``RpcError`` and ``AttachmentError``) so handlers can tell them
apart; every handler turns them into ``{"code", "message"}`` with :meth:`HypiError.to_wire`.
"""

from __future__ import annotations

from typing import Literal

Fault = Literal["caller", "world", "server"]


def fault_of(code: int) -> Fault:
    """Whose fault an error code says it was; a code outside the documented ranges counts as the server's."""
    if -32768 <= code <= -32000:
        return "caller"
    if 1000 <= code <= 1999:
        return "world"
    return "server"


class HypiError(Exception):
    """A refusal with a protocol error code and a message fit to show the caller."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def fault(self) -> Fault:
        return fault_of(int(self.code))

    def to_wire(self) -> dict[str, int | str]:
        """The ``{code, message}`` object of an error answer (JSON-RPC ``error``, or an ``error`` frame's fields)."""
        return {"code": int(self.code), "message": self.message}
