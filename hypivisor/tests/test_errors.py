"""The one error base: its code range says whose fault it was, and it has one wire form."""

from __future__ import annotations

import pytest

from hypivisor.paths import PathError
from hypivisor.registry import RegistryError
from hypivisor.service import RpcFailure
from hypivisor.spawner import SpawnError
from pi_socket.bridge.attachments import AttachmentError
from pi_socket.bridge.hypivisor_client import RpcError
from pi_socket.errors import HypiError, fault_of
from pi_socket.protocol import ErrorCode

ALL = (RegistryError, PathError, SpawnError, RpcFailure, RpcError, AttachmentError)


def test_fault_follows_the_documented_code_ranges():
    for code in ErrorCode:
        want = "caller" if code < 0 else "world" if code < 2000 else "server"
        assert HypiError(code, "m").fault == want, code
    assert fault_of(-32000) == "caller" and fault_of(1999) == "world" and fault_of(2999) == "server"
    assert fault_of(0) == "server" and fault_of(404) == "server"  # undocumented: ours to explain


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_component_error_is_a_hypi_error_with_one_wire_form(cls):
    exc = cls(ErrorCode.PATH_NOT_FOUND, "no such folder")
    assert isinstance(exc, HypiError) and exc.code == 1004 and exc.fault == "world"
    wire = exc.to_wire()
    assert wire == {"code": 1004, "message": "no such folder"} and type(wire["code"]) is int


def test_subclasses_keep_their_own_behaviour():
    assert isinstance(AttachmentError(ErrorCode.TOO_LARGE, "big"), ValueError)
    assert str(AttachmentError(ErrorCode.TOO_LARGE, "big")) == "big"
    assert str(RpcError(1006, "unknown node")) == "1006: unknown node"  # how the bridge logs a refusal
    assert type(RpcFailure(ErrorCode.INVALID_PARAMS, "x").code) is int
