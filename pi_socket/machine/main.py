"""``pi-socket serve`` / ``python -m pi_socket serve``: start this machine's service (one per machine and user)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping

import structlog

from pi_socket import hypivisors, oplog, tokenfile

from .lock import AlreadyRunning, InstanceLock, runtime_dir, secret_path

DEFAULT_HYPIVISOR_WS = "ws://localhost:31415/ws"


def hypivisor_token(env: Mapping[str, str], url: str) -> str | None:
    """``HYPI_TOKEN``, else this machine's token file when the hypivisor is on this machine (as bridges do)."""
    use, path = tokenfile.bridge_token(env, True, url)
    if not use:
        return env.get("HYPI_TOKEN") or None
    try:
        return tokenfile.read_token(path)
    except tokenfile.TokenFileError as exc:
        structlog.get_logger().warning("token file not used", error=str(exc)[:300])
        return None


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    lock = InstanceLock(runtime_dir(env))
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"pi-socket serve: {exc}; nothing to do", file=sys.stderr)
        return 0
    except OSError as exc:
        print(f"pi-socket serve: cannot use the runtime dir {lock.path.parent}: {exc}", file=sys.stderr)
        return 1
    oplog.configure("machine", filename="pi-socket-machine.jsonl", level=env.get("PI_SOCKET_LOG_LEVEL", "info"),
                    stream=sys.stderr)  # fmt: skip
    url = (env.get("HYPIVISOR_WS") or DEFAULT_HYPIVISOR_WS).strip()
    try:  # one URL or several (tried in order, pi_socket.hypivisors); () when off
        urls = hypivisors.parse(url)
    except hypivisors.HypivisorListError as exc:  # local agents are still served; only registration is off
        structlog.get_logger().warning("HYPIVISOR_WS not used; serving local agents only", error=str(exc))
        urls = ()
    token = hypivisor_token(env, url)
    oplog.add_secret(token)
    from .agents import AgentHost
    from .service import MachineService

    try:  # the name's secret survives restarts: a new service (after a crash, a reboot) takes the name back
        secret: str | None = tokenfile.load_or_create(secret_path(env))[0]
    except (OSError, tokenfile.TokenFileError) as exc:
        structlog.get_logger().warning("machine secret not kept (a restarted service may be refused its name)",
                                       error=str(exc)[:300])  # fmt: skip
        secret = None
    oplog.add_secret(secret)
    reconnect = max(0.01, int(env.get("PI_SOCKET_RECONNECT_MS") or 1000) / 1000.0)

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        service = MachineService(env, urls or (DEFAULT_HYPIVISOR_WS,), token, reconnect)
        service.secret = secret
        agents = AgentHost(lock.path.parent)  # every local pi's bridge, served here (specs/machines.md)
        await agents.start()
        try:
            if not urls:  # no hypivisor (off, or a bad HYPIVISOR_WS): serve local agents only
                await asyncio.Event().wait()
            await service.run()
        finally:
            await agents.close()

    try:
        asyncio.run(amain())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        lock.release()
    return 0
