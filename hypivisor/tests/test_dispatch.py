"""The registry's method table: one explicit handler per protocol method, no reflective lookup."""

from __future__ import annotations

import inspect

from hypivisor import service
from pi_socket.protocol import REGISTRY_METHODS


def test_every_protocol_method_has_exactly_one_handler():
    assert service.METHOD_HANDLERS.keys() == REGISTRY_METHODS.keys()
    for name, handler in service.METHOD_HANDLERS.items():
        assert handler.__name__ == f"_m_{name}" and inspect.iscoroutinefunction(handler), name


def test_dispatch_uses_the_table_not_getattr():
    src = inspect.getsource(service.Service.dispatch)
    assert "METHOD_HANDLERS[" in src and "getattr(" not in src
