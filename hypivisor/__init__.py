"""hypivisor: registry, push events, spawn and proxy for pi agents."""

from pi_socket import __version__

__all__ = ["__version__"]
