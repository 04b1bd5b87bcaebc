"""``python -m hypivisor``: parse the command line, configure logging, run the daemon."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Sequence

from hypivisor import config as config_mod
from hypivisor import tokensetup, userservice
from hypivisor.server import StartupError, serve
from pi_socket import oplog, tokenfile


def _loop_factory():
    """uvloop when installed: the byte splice is ~2.5x faster on it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return None
    return uvloop.new_event_loop


# The cyclic collector's first threshold (objects allocated minus freed). CPython's 700 makes a daemon holding a
# large roster run full collections over it again and again while a burst allocates (a fleet failing over to this
# hypivisor, a reconnect storm): about a fifth of its CPU then. Few of its objects are cycles; refcounting frees them.
GC_GEN0 = 20_000


def tune_gc() -> None:
    """Fewer collections, and none over what start-up made (modules, configuration): they live as long as we do."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, gen1, gen2)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["service"]:  # hypivisor service install|uninstall|status
        return userservice.main(args[1:])
    if args[:1] == ["url"]:  # hypivisor url: the dashboard link with this machine's token
        return tokensetup.url_main(args[1:])
    try:
        cfg = config_mod.parse(args, os.environ)
    except ValueError as exc:
        print(f"hypivisor: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = tokensetup.resolve(cfg, os.environ)
    except (OSError, tokenfile.TokenFileError) as exc:
        print(f"hypivisor: {exc} (set HYPI_TOKEN, or pass --no-token)", file=sys.stderr)
        return 2
    oplog.configure("hypivisor", filename="hypivisor.jsonl", level=cfg.log_level)
    oplog.add_secret(cfg.token)
    tune_gc()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(cfg))
    except StartupError as exc:
        print(f"hypivisor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
