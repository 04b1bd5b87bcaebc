"""The hypivisor's VAPID key pair (RFC 8292): made on first start, kept in the state dir.

The private key is ``<state dir>/vapid_private.pem``, mode 0600 (written through a 0600 temporary file and
renamed, so it is never readable by others, not even for a moment). A file that cannot be read is moved
aside and a new pair made, loudly: every browser then has to subscribe again, which Pi-DE does on its next
load (it compares the public key). Without a state dir the pair lives in memory only.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

log = structlog.get_logger(part="push")
KEY_FILE = "vapid_private.pem"


def public_key_b64(vapid: Vapid02) -> str:
    """The applicationServerKey: the uncompressed P-256 point, base64url without padding."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def load_or_create(state_dir: Path | None) -> Vapid02:
    if state_dir is None:
        vapid = Vapid02()
        vapid.generate_keys()
        return vapid
    path = state_dir / KEY_FILE
    if path.exists():
        try:
            return Vapid02.from_pem(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - any unreadable key: make a new one, never refuse to start
            aside = path.with_name(f"{KEY_FILE}.broken-{int(time.time())}")
            path.rename(aside)
            log.error("VAPID key unreadable; moved aside, making a new one (browsers subscribe again)",
                      moved_to=str(aside), error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
    vapid = Vapid02()
    vapid.generate_keys()
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(vapid.private_pem())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    log.info("VAPID key pair created", path=str(path))
    return vapid
