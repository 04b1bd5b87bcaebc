"""The zero-setup token: one file per user that the hypivisor creates and this machine's bridges read.

Where: ``$XDG_CONFIG_HOME/hyper-pi/token`` (else ``~/.config/hyper-pi/token``); ``HYPI_TOKEN_FILE`` names another
file. The folder is made 0700 and the file 0600 (created with ``O_EXCL``, so two processes starting at once agree on
one token). Precedence everywhere: ``HYPI_TOKEN`` in the environment, then this file. specs/security.md §5.

The path and the checks are pure; :func:`read_token` and :func:`load_or_create` are the only I/O.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

MAX_TOKEN = 512  # characters; a longer file is not a token this project wrote
CREATE_WAIT_S = 2.0  # a file another process is writing right now is complete within this


class TokenFileError(Exception):
    """The token file exists but cannot be used (unreadable, empty, not a token): one line for the user."""


def token_path(env: Mapping[str, str]) -> Path:
    if env.get("HYPI_TOKEN_FILE"):
        return Path(env["HYPI_TOKEN_FILE"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "hyper-pi" / "token"


def valid_token(text: str) -> str | None:
    """The token a file holds (surrounding whitespace dropped), or None when it is not one: empty, too long, or
    holding whitespace or control characters inside (it travels in HTTP headers)."""
    token = text.strip()
    if not token or len(token) > MAX_TOKEN or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in token):
        return None
    return token


def is_local_url(url: str) -> bool:
    """Whether a ``ws://`` URL names this machine (``localhost``, 127/8, ::1): the only hypivisor a bridge may send
    the local token file's token to."""
    try:
        host = (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return False
    if host in ("localhost", "localhost.") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bridge_token(env: Mapping[str, str], registry_enabled: bool, registry_url: str) -> tuple[bool, Path]:
    """Whether a bridge reads the token file, and which: only without ``HYPI_TOKEN``, and only when its hypivisor
    is on this machine (or it registers nowhere). A remote hypivisor has its own token (``HYPI_TOKEN``); this
    machine's must never be sent to it. A list (``ws://a/ws,ws://b/ws``, one token for all): only when every
    hypivisor of it is on this machine."""
    urls = [url for url in registry_url.split(",") if url.strip()]
    local = bool(urls) and all(is_local_url(url) for url in urls)
    use = not env.get("HYPI_TOKEN") and (not registry_enabled or local)
    return use, token_path(env)


def read_token(path: Path) -> str | None:
    """The token in ``path``; None when there is no file. TokenFileError when it is there but unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc}") from None
    token = valid_token(text)
    if token is None:
        raise TokenFileError(f"the token file {path} holds no usable token (delete it to make a new one)")
    return token


def _private_dir(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) & 0o077:
        os.chmod(folder, 0o700)


def load_or_create(path: Path) -> tuple[str, bool]:
    """(token, created): the file's token, or a new random one written to a new 0600 file. A file readable by
    others is made 0600 first. OSError when the folder or file cannot be made; TokenFileError when it is unusable."""
    _private_dir(path.parent)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        deadline = time.monotonic() + CREATE_WAIT_S
        while True:  # another process may be between O_EXCL and its write: bounded wait for the bytes
            try:
                found = read_token(path)
            except TokenFileError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            if found is not None:
                return found, False
            raise TokenFileError(f"the token file {path} disappeared while it was read") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, True


def dashboard_url(host: str, port: int, token: str) -> str:
    """The dashboard's address carrying the token in the fragment (never sent to a server; the page stores it and
    removes it from the address bar). Pure."""
    shown = "localhost" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/#token={quote(token, safe='')}"
