"""The installs people actually do yield a working dashboard, or fail with one line (specs/install.md):

* ``pip install <clean clone>`` with Node: the build hook builds Pi-DE, the venv serves it;
* ``pip install <sdist>`` with Node hidden from PATH: the sdist carries the built dashboard;
* ``pip install <clean clone>`` without Node and without a built dashboard: the one-line error, no wheel.

A "clean clone" is ``git clone`` of the repository (its committed files), so nothing built is in it; where Node is
used, its ``pi_de/node_modules`` links to the repository's (``npm ci`` from the registry is the same step, minutes
slower).
Installs use ``--no-deps`` into fresh virtual environments: what is checked is what the build puts in the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "pi_de" / "node_modules"
pytestmark = pytest.mark.slow


def clean_clone(dest: Path) -> Path:
    """``git clone`` of the repository: its committed files only, nothing built, nothing of a work in progress."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=300)
    assert not (dest / "pi_de" / "dist").exists() and not (dest / "pi_de" / "node_modules").exists()
    return dest


def no_node_path(tmp: Path) -> str:
    """A PATH with git and tar but no node or npm (they live in /usr/bin here, so /usr/bin cannot be on it)."""
    bindir = tmp / "bin-without-node"
    bindir.mkdir()
    for tool in ("git", "tar", "sh", "uname"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return str(bindir)


def fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where / "bin" / "python"


def pip_install(python: Path, target: Path, path_env: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HYPI", "PIP_")) and k != "VIRTUAL_ENV"}
    env.update(PATH=f"{python.parent}{os.pathsep}{path_env}", HOME=str(tmp), PIP_DISABLE_PIP_VERSION_CHECK="1")
    # build isolation as a user gets it: pip fetches the build backend (setuptools>=77) from the index
    return subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", str(target)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp,
    )


def installed_dashboard(python: Path) -> Path:
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(site) / "hypivisor" / "dashboard"


@pytest.fixture(scope="module")
def node_ok():
    if not shutil.which("node") or not shutil.which("npm") or not NODE_MODULES.is_dir():
        pytest.skip("needs Node 20+, npm and pi_de/node_modules (make pide-deps)")


def test_pip_install_of_a_clean_clone_builds_the_dashboard_with_node(tmp_path, node_ok):
    src = clean_clone(tmp_path / "clone")
    # Its own node_modules, from npm's cache (`make test` filled it): a symlink to the repository's got that folder
    # emptied through the link during a full run.
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=src / "pi_de", check=True, timeout=600,
        capture_output=True,
    )  # fmt: skip
    python = fresh_venv(tmp_path / "venv")
    done = pip_install(python, src, os.environ["PATH"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    dash = installed_dashboard(python)
    assert (dash / "index.html").is_file() and list((dash / "assets").glob("*.js")), "the wheel has Pi-DE"
    assert (src / "pi_de" / "dist" / "index.html").is_file(), "built in the clone by the hook"


def test_an_sdist_carries_the_dashboard_and_installs_without_node(tmp_path, node_ok):
    src = clean_clone(tmp_path / "clone")
    # The dashboard built as the previous test proves the hook does; here what matters is that the sdist carries it.
    built = REPO / "pi_de" / "dist"
    if not (built / "index.html").is_file():
        pytest.skip("pi_de/dist is not built (make dashboard)")
    shutil.copytree(built, src / "pi_de" / "dist")
    out = tmp_path / "sdist"
    builder = fresh_venv(tmp_path / "build-venv")  # the PEP 517 sdist hook with the backend pyproject asks for
    subprocess.run([str(builder), "-m", "pip", "install", "-q", "setuptools>=77", "wheel"], check=True, timeout=300)
    made = subprocess.run(
        [str(builder), "-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    sdist = out / made.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("/pi_de/dist/index.html") for n in names), "the sdist carries the built dashboard"
    assert not any("/node_modules/" in n for n in names)
    python = fresh_venv(tmp_path / "venv")
    hidden = no_node_path(tmp_path)
    assert shutil.which("node", path=hidden) is None
    done = pip_install(python, sdist, hidden, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (installed_dashboard(python) / "index.html").is_file()


def test_a_clean_clone_without_node_fails_with_one_line(tmp_path):
    src = clean_clone(tmp_path / "clone")
    python = fresh_venv(tmp_path / "venv")
    done = pip_install(python, src, no_node_path(tmp_path), tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    lines = [ln for ln in out.splitlines() if "hyper-pi: the dashboard (pi_de/dist) is not built" in ln]
    assert lines, out
    assert "Node.js (with npm) is not on PATH" in lines[0] and "sdist or wheel" in lines[0], lines[0]
    assert not installed_dashboard(python).parent.exists(), "nothing installed"
