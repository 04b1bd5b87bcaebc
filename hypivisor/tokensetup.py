"""The hypivisor's token at start: ``HYPI_TOKEN``, else the token file (made at the first start), else none with
``--no-token``. What to print about it. ``hypivisor url``. specs/security.md §5."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence

from hypivisor.config import DEFAULT_DASHBOARD_PORT, Config
from pi_socket import tokenfile


def resolve(config: Config, env: Mapping[str, str]) -> Config:
    """The config with its token: the environment's, else the token file's (made now when missing). OSError or
    tokenfile.TokenFileError when the file cannot be made or read (the caller prints one line and exits 2)."""
    if config.token or config.no_token:
        return config
    path = tokenfile.token_path(env)
    token, created = tokenfile.load_or_create(path)
    return dataclasses.replace(config, token=token, token_file=path, token_created=created)


def lines(config: Config, tty: bool) -> list[str]:
    """What the start prints about the token file. The link carrying the token is printed at the first start (the
    person who started it needs it once) and whenever stdout is a terminal; a service's log gets the file's path."""
    if config.token_file is None or not config.token:
        return []
    made = "made now" if config.token_created else "0600"
    out = [f"hypivisor: token from {config.token_file} ({made}); this machine's bridges read it there"]
    if config.dashboard_port and (config.token_created or tty):
        url = tokenfile.dashboard_url(config.host, config.dashboard_port, config.token)
        out.append(f"hypivisor: open the dashboard (the link carries the token once): {url}")
    elif config.dashboard_port:
        out.append("hypivisor: `hypivisor url` prints the dashboard link carrying the token")
    return out


def url_main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """``hypivisor url [--dashboard-port P] [--host H]``: the dashboard link with this machine's token."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="hypivisor url", description=url_main.__doc__)
    p.add_argument("--host", default="localhost")
    p.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    args = p.parse_args(argv)
    try:
        token = env.get("HYPI_TOKEN") or tokenfile.read_token(tokenfile.token_path(env))
    except tokenfile.TokenFileError as exc:
        print(f"hypivisor: {exc}", file=sys.stderr)
        return 2
    if not token:
        print(f"http://{args.host}:{args.dashboard_port}/")
        print(f"hypivisor: no token yet ({tokenfile.token_path(env)} is made at the first start)", file=sys.stderr)
        return 0
    print(tokenfile.dashboard_url(args.host, args.dashboard_port, token))
    return 0
