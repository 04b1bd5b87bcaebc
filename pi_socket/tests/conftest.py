"""Fixtures shared by the bridge's tests: ``shim`` (a real bridge process driven by a fake shim)."""

from .bridge_helpers import shim

__all__ = ["shim"]
