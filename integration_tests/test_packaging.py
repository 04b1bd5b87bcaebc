"""A fresh clone becomes a wheel; the wheel, installed into a fresh virtual environment, is a working Hyper-Pi.

The wheel is built with ``pip wheel --no-deps`` from a copy of the repository's tracked files (plus ``pi_de/dist``
when it was built), so the build writes nothing into the checkout. The virtual environment gets its dependencies from
the package index with its own pip. Everything then runs from the venv, outside the repository, with no PYTHONPATH:
console scripts, the installer, a real pi 0.73.1 loading the installed shim (which starts the installed bridge) and
resolving the packaged skill, the hypivisor serving the bundled dashboard, and ``doctor`` checking the chain.

Requirements PK-1 and PK-2 in specs/requirements.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from hypivisor.demo import fake_llm
from integration_tests.harness.hypivisor_proc import free_port
from integration_tests.harness.pi_proc import pi_bin, wait_until
from pi_socket import __version__

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "pi_de" / "dist"
pytestmark = pytest.mark.slow


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PI_", "HYPI", "TMUX", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("build")
    src = root / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        f = REPO / rel
        if f.is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src / rel)
    if (DIST / "index.html").is_file():
        shutil.copytree(DIST, src / "pi_de" / "dist")
    out = root / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("hyper_pi-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv_bin(wheel, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("venv") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(d)
    done = subprocess.run(
        [str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return d / "bin"


def bundled_dist(wheel: Path) -> Path | None:
    """The pi_de/dist the wheel was built from (a snapshot: the repository's may be rebuilt meanwhile)."""
    d = wheel.parent.parent / "src" / "pi_de" / "dist"
    return d if (d / "index.html").is_file() else None


def run(venv_bin: Path, *argv: str, cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    exe = argv[0] if os.path.isabs(argv[0]) else str(venv_bin / argv[0])
    return subprocess.run(
        [exe, *argv[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(**{"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", **env}),
        stdin=subprocess.DEVNULL,
    )


def test_wheel_holds_the_packages_the_shim_the_skill_and_the_dashboard(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("pi_socket/extension/package.json"))
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        skill = z.read("pi_socket/skills/harden-pi-socket/SKILL.md").decode()
    assert wheel.name == f"hyper_pi-{__version__}-py3-none-any.whl"
    for name in (
        "hypivisor/__main__.py",
        "hypivisor/demo/__main__.py",
        "hypivisor/demo/launcher.py",
        "hypivisor/demo/fake_llm.py",
        "pi_socket/__main__.py",
        "pi_socket/install.py",
        "pi_socket/bridge/__main__.py",
        "pi_socket/harden/__main__.py",
        "pi_socket/extension/src/index.ts",
        "pi_socket/extension/src/child.ts",
        "pi_socket/extension/src/slim.ts",
        "pi_socket/extension/dist/pi-socket.js",
        "pi_socket/skills/harden-pi-socket/ledger.jsonl",
    ):
        assert name in names, name
    assert not [n for n in names if "/tests/" in n or "__pycache__" in n or n.startswith("pi_socket/extension/test/")]
    # the manifest points at the packaged skill (the repository's ../../skills would leave the package)
    assert manifest["pi"]["skills"] == ["../skills"] and manifest["pi"]["extensions"] == ["./dist/pi-socket.js"]
    assert manifest["version"] == __version__
    assert skill == (REPO / "skills" / "harden-pi-socket" / "SKILL.md").read_text()
    assert "hypivisor = hypivisor.__main__:main" in entry_points
    assert "pi-socket = pi_socket.__main__:main" in entry_points
    dist = bundled_dist(wheel)
    if dist:
        built = {str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file()}
        assert {f"hypivisor/dashboard/{p}" for p in built} <= names
    else:
        pytest.skip("pi_de/dist is not built (make dashboard): the wheel has no dashboard to check")


def test_console_scripts_run_from_a_fresh_venv(wheel, venv_bin, tmp_path):
    helped = run(venv_bin, "hypivisor", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for flag in ("--port", "--dashboard-port", "--node-ttl", "HYPI_TOKEN"):
        assert flag in helped.stdout
    assert run(venv_bin, "hypivisor", "--port", "x", cwd=tmp_path).returncode == 2
    helped = run(venv_bin, "pi-socket", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and all(c in helped.stdout for c in ("install", "uninstall", "doctor"))
    where = run(
        venv_bin,
        "python",
        "-c",
        "import hypivisor, pi_socket, hypivisor.config as c; "
        "print(hypivisor.__file__); print(pi_socket.__version__); print(c.default_dashboard_dir())",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    module, version, dashboard = where.stdout.split("\n")[:3]
    assert str(venv_bin.parent) in module and version == __version__, "imported from the venv, not the repository"
    if bundled_dist(wheel):
        assert dashboard == str(Path(module).parent / "dashboard"), "falls back to the bundled Pi-DE"


def test_installed_wheel_runs_the_whole_chain_with_a_real_pi(wheel, venv_bin, tmp_path):
    """install → a real pi loads the installed shim → the installed bridge starts → the packaged skill resolves;
    the venv's hypivisor serves the bundled dashboard; doctor checks every link and passes."""
    pi = pi_bin("0.73.1")
    if not pi.exists():
        pytest.skip("pi 0.73.1 is not installed: run bash integration_tests/setup_env.sh")
    site = Path(
        run(
            venv_bin, "python", "-c", "import pi_socket, os; print(os.path.dirname(pi_socket.__file__))", cwd=tmp_path
        ).stdout.strip()
    )
    home, agent, work, logs = (tmp_path / n for n in ("home", "agent", "work", "logs"))
    for d in (home, agent, work, logs):
        d.mkdir()
    llm = fake_llm.serve("127.0.0.1", 0)
    hv = None
    try:
        llm_url = f"http://127.0.0.1:{llm.server_address[1]}"
        models = json.loads((REPO / "integration_tests" / "harness" / "models.json").read_text())
        models["providers"]["fake"]["baseUrl"] = f"{llm_url}/v1"
        (agent / "models.json").write_text(json.dumps(models))
        shutil.copy(REPO / "integration_tests" / "harness" / "settings.json", agent / "settings.json")
        port, dash_port = free_port(), free_port()
        env = {
            "HOME": str(home),
            "PI_CODING_AGENT_DIR": str(agent),
            "PI_OFFLINE": "1",
            "PI_SKIP_VERSION_CHECK": "1",
            "PI_SOCKET_LOG_DIR": str(logs),
            "PI_SOCKET_PORT": "0",
            "PI_BIN": str(pi),
            "HYPIVISOR_WS": f"ws://127.0.0.1:{port}/ws",
        }

        installed = run(venv_bin, "pi-socket", "install", cwd=tmp_path, **env)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert f"changed: {agent / 'settings.json'}" in installed.stdout
        assert f"changed: {agent / 'pi-socket.json'}" in installed.stdout
        assert str(site / "skills") in installed.stdout, "install names the packaged skill folder"
        settings = json.loads((agent / "settings.json").read_text())
        assert settings["packages"] == [str(site / "extension")]
        assert json.loads((agent / "pi-socket.json").read_text())["python"].startswith(str(venv_bin.parent))

        hv = subprocess.Popen(
            [
                str(venv_bin / "hypivisor"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-port",
                str(dash_port),
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_clean_env(HOME=str(home), PI_SOCKET_LOG_DIR=str(logs)),
        )

        def healthy() -> bool:
            assert hv.poll() is None, "the venv's hypivisor exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait_until(healthy, 20, "the venv's hypivisor")
        if bundled_dist(wheel):
            with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/", timeout=5) as resp:
                assert resp.status == 200 and resp.read() == (bundled_dist(wheel) / "index.html").read_bytes()

        # a real pi: the shim from site-packages starts the bridge from the venv; the skill resolves from the wheel
        done = run(venv_bin, str(pi), "-p", "--no-session", "/skill:harden-pi-socket", cwd=work, timeout=90, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        users = [m for b in fake_llm.STATE["requests"] for m in b.get("messages", []) if m.get("role") == "user"]
        last = users[-1]["content"]
        text = last if isinstance(last, str) else "".join(p.get("text", "") for p in last)
        assert text.startswith('<skill name="harden-pi-socket"'), text[:200]
        bridge_log = (logs / "pi-socket.jsonl").read_text()
        assert "agent server listening" in bridge_log

        doctor = run(venv_bin, "pi-socket", "doctor", cwd=tmp_path, timeout=90, **env)
        report = doctor.stdout
        for check in ("pi", "node", "shim", "bridge", "hypivisor", "dashboard"):
            assert f"OK   {check}:" in report or f"FAIL {check}:" in report, (check, report)
        assert "OK   shim:" in report and "OK   bridge:" in report and "OK   hypivisor:" in report, report
        assert "OK   pi:" in report and "OK   node:" in report, report
        if bundled_dist(wheel):
            assert f"OK   dashboard: {site.parent / 'hypivisor' / 'dashboard'} built" in report, report
            assert doctor.returncode == 0, report

        # (doctor's failure reports are covered by integration_tests/test_pi_install.py)
        removed = run(venv_bin, "pi-socket", "uninstall", cwd=tmp_path, **env)
        assert removed.returncode == 0 and json.loads((agent / "settings.json").read_text())["packages"] == []
    finally:
        if hv is not None and hv.poll() is None:
            hv.kill()
            hv.wait(10)
        llm.shutdown()
        llm.server_close()


def test_the_demo_runs_from_the_installed_wheel(wheel, venv_bin, tmp_path):
    """``pip install`` + ``python -m hypivisor.demo``: one agent on the packaged fake LLM, bundled dashboard."""
    pi = pi_bin("0.73.1")
    if not pi.exists() or not shutil.which("tmux"):
        pytest.skip("needs tmux and pi 0.73.1: run bash integration_tests/setup_env.sh")
    port, dash_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(venv_bin / "python"),
            "-m",
            "hypivisor.demo",
            "--port",
            str(port),
            "--dashboard-port",
            str(dash_port),
            "--pi",
            str(pi),
            "--agents",
            "1",
            "--no-prompts",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_clean_env(PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"),
    )
    lines: list[str] = []
    threading.Thread(
        target=lambda: lines.extend(ln.decode(errors="replace") for ln in proc.stdout), daemon=True
    ).start()
    try:
        wait_until(lambda: proc.poll() is not None or any("DEMO READY" in ln for ln in lines), 90, "the demo")
        assert proc.poll() is None, "".join(lines)
        assert str(venv_bin.parent) in "".join(lines), "the installer ran from the venv"
        if bundled_dist(wheel):
            with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/", timeout=5) as resp:
                assert resp.read() == (bundled_dist(wheel) / "index.html").read_bytes()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, "".join(lines)
        assert "stopped" in lines[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock = next((m for ln in lines for m in ln.split() if m.startswith("hypi-demo-") and len(m) == 16), None)
        if sock:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=10)
