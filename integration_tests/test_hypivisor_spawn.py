"""spawn_agent under real tmux with a stub `pi` that registers like a bridge would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.spawn import NEEDS_TMUX, start, tmux

pytestmark = NEEDS_TMUX


async def test_spawn_in_new_folder_registers_with_explicit_env(hypivisor_factory, env_dirs):
    home, _, tmuxdir = env_dirs
    (home / "projects").mkdir()
    hv = start(hypivisor_factory, env_dirs, token="tok-123", PI_STUB_MODE="register")
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        res = await dash.call("spawn_agent", {"path": "projects", "new_folder": "my.app"}, timeout=40)
        assert "result" in res, res
        result = res["result"]
        folder = str((home / "projects" / "my.app").resolve())
        assert result["path"] == folder and result["node"]["cwd"] == folder
        assert result["node_id"] == result["node"]["id"] and result["node_id"].startswith("stub-")
        session = result["tmux_session"]
        assert session.startswith("pi-my-app-")
        assert tmux(tmuxdir, "has-session", "-t", session).returncode == 0
        pane = tmux(tmuxdir, "display-message", "-p", "-t", session, "#{pane_current_path} #{pane_pid}").stdout.split()
        assert pane[0] == folder and int(pane[1]) == result["node"]["pid"]
        assert (await dash.event("node_joined"))["node"]["id"] == result["node_id"]


async def test_timeout_reports_what_pi_printed(hypivisor_factory, env_dirs):
    home, _, tmuxdir = env_dirs
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="silent", HYPI_SPAWN_TIMEOUT="2")
    async with await RegistryClient.connect(hv) as dash:
        res = await dash.call("spawn_agent", {"path": "~"}, timeout=20)
        err = res["error"]
        assert err["code"] == 1010 and "did not register within 2 s" in err["message"]
        assert "API key missing, not registering" in err["message"]


async def test_missing_tmux_or_pi_is_a_clear_error(hypivisor_factory, env_dirs, tmp_path):
    home, bindir, tmuxdir = env_dirs
    empty = tmp_path / "emptybin"
    empty.mkdir()
    hv = start(hypivisor_factory, env_dirs, path_prefix=False, PATH=str(bindir))
    async with await RegistryClient.connect(hv) as dash:
        err = (await dash.call("spawn_agent", {"path": "~"}))["error"]
        assert err["code"] == 1009 and "tmux is not installed" in err["message"]
    tmux_dir = os.path.dirname(shutil.which("tmux"))
    hv2 = start(hypivisor_factory, (tmp_path / "h2", bindir, tmuxdir), path_prefix=False, PATH=tmux_dir)
    if shutil.which("pi", path=tmux_dir):
        pytest.skip("a real pi is installed next to tmux")
    async with await RegistryClient.connect(hv2) as dash:
        err = (await dash.call("spawn_agent", {"path": "~"}))["error"]
        assert err["code"] == 1009 and "pi is not installed" in err["message"]


async def test_path_escapes_are_rejected_and_nothing_is_created(hypivisor_factory, env_dirs, tmp_path):
    home, _, _ = env_dirs
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "proj").mkdir()
    (home / "proj" / "out-link").symlink_to(outside)
    hv = start(hypivisor_factory, env_dirs)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    cases = [
        ({"path": "..", "new_folder": "x"}, 1003),
        ({"path": str(outside), "new_folder": "x"}, 1003),
        ({"path": "proj/out-link", "new_folder": "x"}, 1003),
        ({"path": "proj", "new_folder": "a/b"}, 1005),
        ({"path": "proj", "new_folder": ".."}, 1005),
        ({"path": "proj", "new_folder": ".hidden"}, 1005),
        ({"path": "proj/../../outside"}, 1003),
        ({"path": "/etc"}, 1003),
        ({"path": "missing"}, 1004),
    ]
    async with await RegistryClient.connect(hv) as dash:
        for params, code in cases:
            res = await dash.call("spawn_agent", params)
            assert res.get("error", {}).get("code") == code, (params, res)
    after = sorted(p.name for p in tmp_path.rglob("*"))
    new = set(after) - set(before)
    assert not {"x", "a", "b", ".hidden"} & new, new


async def test_spawn_command_template(hypivisor_factory, env_dirs):
    home, bindir, _ = env_dirs
    (home / "it's here").mkdir()
    hv = start(hypivisor_factory, env_dirs, HYPI_SPAWN_COMMAND="cd {path} && exec pi", PI_STUB_MODE="register")
    async with await RegistryClient.connect(hv) as dash:
        res = await dash.call("spawn_agent", {"path": "it's here"}, timeout=40)
        assert "result" in res, res
        try:
            assert res["result"]["tmux_session"] is None
            assert res["result"]["node"]["cwd"] == str((home / "it's here").resolve())
        finally:  # a template's pi runs outside tmux: stop the stand-in, which would otherwise sleep for an hour
            with contextlib.suppress(ProcessLookupError):
                os.kill(res["result"]["node"]["pid"], signal.SIGKILL)
