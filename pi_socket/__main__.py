"""``python -m pi_socket install | uninstall | doctor | build-shim | serve`` (see pi_socket/install.py, pi_socket/shimbuild.py)."""

from __future__ import annotations

import argparse
import sys

from pi_socket import install as installer


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["service"]:  # pi-socket service install|uninstall|status [--dry-run] (pi_socket/userservice.py)
        from pi_socket import userservice

        return userservice.main(userservice.MACHINE, argv[1:])
    parser = argparse.ArgumentParser(prog="python -m pi_socket", description="Install the Hyper-Pi shim into pi.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("install", "load the shim in every pi (global package in the pi agent dir)"),
        ("uninstall", "stop loading the shim"),
        ("doctor", "check pi, node, the shim, the bridge, the hypivisor and the dashboard"),
    ):
        p = sub.add_parser(name, help=text)
        if name != "uninstall":
            p.add_argument("--pi", help="the pi executable (default: PI_BIN or `pi` on PATH)")
    sub.add_parser(
        "service",
        help="install|uninstall|status the machine service as a user service (systemd/launchd; "
        "prints what it writes and runs; --dry-run)",
    )
    sub.add_parser("serve", help="run this machine's service: register the machine with the hypivisor (HYPIVISOR_WS)")
    p = sub.add_parser("build-shim", help="bundle extension/src/*.ts into extension/dist/pi-socket.js (what pi loads)")
    p.add_argument("--check", action="store_true", help="only say whether the bundle matches src/ (exit 1 if not)")
    args = parser.parse_args(argv)
    if args.command == "build-shim":
        from pi_socket import shimbuild

        return shimbuild.main(args.check)
    if args.command == "serve":
        from pi_socket.machine.main import main as serve

        return serve()
    if args.command == "install":
        return installer.install(args.pi)
    if args.command == "uninstall":
        return installer.uninstall()
    return installer.doctor(args.pi)


if __name__ == "__main__":
    sys.exit(main())
