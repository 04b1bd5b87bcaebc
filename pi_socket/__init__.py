"""pi_socket: the pi extension shim and the Python agent bridge."""

__version__ = "0.1.0"
