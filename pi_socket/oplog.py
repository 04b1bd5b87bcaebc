"""Operational log: JSON lines, one event per line, shared by the bridge and the hypivisor.

Line format (the hardening helper reads exactly this)::

    {"ts": "2026-11-23T20:41:07.123Z", "level": "info", "component": "bridge",
     "msg": "agent server listening", "port": 8080, ...}

Errors caught at an outer boundary add ``"needsHardening": true``,
``"boundary": "<name>"``, ``"error": "<Type: message>"`` and ``"stack"``.

Rules this module enforces so callers cannot get them wrong:

* never a token in a line: values of keys such as ``token``/``authorization``
  are replaced, and the configured secret is scrubbed from every string;
* logging never raises: a full disk or an unwritable directory makes the log
  go quiet (one attempt to reopen per minute), nothing else fails;
* the file rotates (size-capped, a few generations kept) so it cannot fill a
  disk.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_BACKUPS = 3
_SECRET_KEYS = re.compile(r"(token|authorization|secret|password|api[_-]?key)", re.I)
_QUERY_TOKEN = re.compile(r"(token=)[^&\s\"']+", re.I)
_BEARER = re.compile(r"(bearer\s+)[^\s\"']+", re.I)
_TOKEN_PROTOCOL = re.compile(r"(hypi-token\.)[A-Za-z0-9_=-]+")  # the token as a WebSocket subprotocol
REDACTED = "[redacted]"


def default_log_dir() -> Path:
    return Path(os.environ.get("PI_SOCKET_LOG_DIR") or Path.home() / ".pi" / "logs")


class RotatingJsonlFile:
    """Append-only line writer with size rotation that never raises."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh: TextIO | None = None
        self._size = 0
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self.failures = 0

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._size = self._fh.tell()

    def _rotate(self) -> None:
        assert self._fh is not None
        self._fh.close()
        self._fh = None
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def write_line(self, line: str) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._fh is None and now < self._retry_at:
                return False
            try:
                if self._fh is None:
                    self._open()
                assert self._fh is not None
                data = line + "\n"
                if self._size + len(data) > self.max_bytes and self._size > 0:
                    self._rotate()
                self._fh.write(data)
                self._fh.flush()
                self._size += len(data)
                return True
            except (OSError, ValueError):
                self.failures += 1
                self._retry_at = now + 60.0
                try:
                    if self._fh is not None:
                        self._fh.close()
                except OSError:
                    pass
                self._fh = None
                return False

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass
                self._fh = None


# The machine service serves many agents in one process: each agent's lines go to that agent's own file (the one
# its per-pi bridge would write), set for the agent's task and inherited by the tasks it starts.
_context_file: contextvars.ContextVar[RotatingJsonlFile | None] = contextvars.ContextVar("oplog_file", default=None)


def use_file(file: RotatingJsonlFile | None) -> None:
    """Send the current context's log lines (this task and the tasks it starts) to ``file`` instead of the
    process's file and stream."""
    _context_file.set(file)


class _Sink:
    """structlog logger: receives the rendered line, sends it to the file (and optionally a stream)."""

    def __init__(self, file: RotatingJsonlFile | None, stream: TextIO | None):
        self.file = file
        self.stream = stream

    def msg(self, line: str) -> None:
        own = _context_file.get()
        if own is not None:
            own.write_line(line)
            return
        if self.file is not None:
            self.file.write_line(line)
        if self.stream is not None:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    debug = info = warning = warn = error = critical = exception = msg


_secrets: list[str] = []


def add_secret(value: str | None) -> None:
    """Register a secret (e.g. HYPI_TOKEN) to scrub from every log line."""
    if value and value not in _secrets:
        _secrets.append(value)


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        for s in _secrets:
            if s in value:
                value = value.replace(s, REDACTED)
        value = _QUERY_TOKEN.sub(r"\1" + REDACTED, value)
        value = _TOKEN_PROTOCOL.sub(r"\1" + REDACTED, value)
        return _BEARER.sub(r"\1" + REDACTED, value)
    if isinstance(value, dict):
        return {k: (REDACTED if _SECRET_KEYS.search(str(k)) and v else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _redact(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    return scrub(dict(event))


def _shape(component: str) -> Callable[[WrappedLogger, str, EventDict], EventDict]:
    def processor(_logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        level = "warn" if method == "warning" else ("error" if method in ("exception", "critical") else method)
        msg = event.pop("event", "")
        out: dict[str, Any] = {
            "ts": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "component": event.pop("component", component),
            "msg": msg,
        }
        out.update(event)
        return out

    return processor


def _render(_logger: WrappedLogger, _name: str, event: EventDict) -> str:
    return orjson.dumps(event, default=repr).decode()


def configure(
    component: str,
    *,
    filename: str | None = None,
    level: str = "info",
    log_dir: Path | None = None,
    stream: TextIO | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> RotatingJsonlFile | None:
    """Set up structlog for this process. ``filename=None`` logs only to ``stream``."""
    file = None
    if filename:
        file = RotatingJsonlFile((log_dir or default_log_dir()) / filename, max_bytes=max_bytes)
    sink = _Sink(file, stream)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _shape(component),
            _redact,
            _render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level.lower(), 20)),
        logger_factory=lambda *_: sink,
        cache_logger_on_first_use=False,
    )
    return file


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger().bind(**bind)


def hardening_fields(boundary: str, exc: BaseException) -> dict[str, Any]:
    """Fields for an unanticipated error caught at an outer boundary."""
    return {
        "needsHardening": True,
        "boundary": boundary,
        "error": f"{type(exc).__name__}: {exc}",
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
    }


def log_boundary_error(boundary: str, exc: BaseException, **extra: Any) -> None:
    """Log an error caught at an outer boundary. Never raises."""
    try:
        structlog.get_logger().error("unhandled error at boundary", **hardening_fields(boundary, exc), **extra)
    except Exception:  # noqa: BLE001 - the logger itself must never take anything down
        try:
            sys.stderr.write(f"log failure at {boundary}: {exc!r}\n")
        except Exception:  # noqa: BLE001
            pass
