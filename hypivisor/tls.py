"""TLS for the dashboard port (``--tls-cert``/``--tls-key``): browsers give service workers, Web Push and
installable apps only to a secure context (https, or localhost), so a phone needs the dashboard over https.

Only the dashboard listener is wrapped; the registry port stays plain for the bridges on this machine. A
certificate or key that cannot be loaded is a start-up error naming the file, never a silent plain port.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TLSConfigError(ValueError):
    """The certificate or key cannot be used (the message says which and why)."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except FileNotFoundError as exc:
        raise TLSConfigError(f"TLS file not found: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}") from None
    # HTTP/1.1 only: the front reads one request head and hands the connection to aiohttp or a splice
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
