"""``python -m pi_socket.bridge``: started by the shim inside pi with piped stdio.

stdout is reserved for protocol lines: fd 1 is duplicated for the shim link and
then pointed at /dev/null, so a stray print anywhere cannot corrupt the
protocol. Nothing is written to stderr either (the TUI must stay clean):
Python warnings and library logging go to the operational log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Mapping

import structlog

from pi_socket import oplog, tokenfile

from . import faults
from .app import Bridge
from .config import DEFAULT_HYPIVISOR_WS, BridgeConfig
from .shimlink import ShimLink


class _ToOplog(logging.Handler):
    """Library log records (websockets, asyncio) → the JSON log, never stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = logging.WARNING if record.levelno < logging.ERROR else logging.ERROR
            structlog.get_logger().log(level, record.getMessage()[:2000], logger=record.name)
        except Exception:  # noqa: BLE001 - logging never raises
            pass


def _isolate_stdout() -> int:
    """Keep a private fd for protocol lines; everything else writing to fd 1 goes to /dev/null."""
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    return out_fd


def _quiet_stderr() -> None:
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    root.handlers[:] = [_ToOplog()]
    root.setLevel(logging.WARNING)


def _loop_exception_handler(_loop: asyncio.AbstractEventLoop, context: dict) -> None:
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        oplog.log_boundary_error("event_loop", exc, detail=str(context.get("message"))[:300])
    else:
        structlog.get_logger().warning("event loop warning", detail=str(context.get("message"))[:300])


def bridge_environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment (``os.environ`` by default) with ``HYPI_TOKEN`` from this machine's token file when it has
    none and the hypivisor is local (``pi_socket.tokenfile.bridge_token``); read once, at start."""
    env = os.environ if env is None else env
    registry = env.get("HYPIVISOR_WS", DEFAULT_HYPIVISOR_WS).strip()
    use, path = tokenfile.bridge_token(env, registry.lower() not in ("", "off", "none", "0"), registry)
    if not use:
        return env
    try:
        token = tokenfile.read_token(path)
    except tokenfile.TokenFileError as exc:
        structlog.get_logger().warning("token file not used", error=str(exc)[:300])
        return env
    return {**env, "HYPI_TOKEN": token} if token else env


async def _amain(out_fd: int, env: Mapping[str, str]) -> int:
    asyncio.get_running_loop().set_exception_handler(_loop_exception_handler)
    config = BridgeConfig.from_env(env)
    shim = await ShimLink.from_stdio(out_fd)
    bridge = Bridge(config, shim)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a polite kill still deregisters
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, bridge.stop)
    return await bridge.run()


def main() -> int:
    out_fd = _isolate_stdout()
    oplog.configure("bridge", filename="pi-socket.jsonl", level=os.environ.get("PI_SOCKET_LOG_LEVEL", "info"))
    env = bridge_environment()
    oplog.add_secret(env.get("HYPI_TOKEN"))
    _quiet_stderr()
    faults.arm_from_env()
    try:
        import uvloop

        runner = uvloop.run if os.environ.get("PI_SOCKET_UVLOOP", "1") != "0" else asyncio.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(_amain(out_fd, env))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - last resort: log, exit non-zero; the shim restarts us
        oplog.log_boundary_error("main", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
