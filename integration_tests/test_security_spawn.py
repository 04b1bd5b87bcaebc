"""spawn_agent against hostile folder names and hostile callers: real hypivisor, real tmux, a stub `pi`.

A folder name is data whoever chose it: tmux formats (``#(...)`` runs a command, ``#{...}`` substitutes),
tmux's ``;`` command separator, shell syntax and option-like names run nothing and move pi nowhere, whether the
caller names the folder (``new_folder``) or it already exists on disk (a cloned repository). A spawn is bound to
the agent it started, limited, and leaves nothing behind when it fails.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.spawn import NEEDS_TMUX, start, tmux

pytestmark = NEEDS_TMUX

HOSTILE = ["#(cd;touch PWNED)", "#{pane_id}x", "#{pane_current_path}", "#[fg=red]y", "-x", "-c", "--", "a\nb",
           "evil\u202egnp.exe", "$(cd;touch PWNED2)", "`cd;touch PWNED3`", "a;b'c\"d", "tab\tname", "\x1b[31mred",
           "end;", "end\\;", "end\\\\;", "#(cd;touch PWNED4);"]  # fmt: skip


async def wait_until(check, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


def sessions(tmuxdir) -> list[str]:
    res = tmux(tmuxdir, "list-sessions", "-F", "#{session_name}")
    return res.stdout.split() if res.returncode == 0 else []


@pytest.mark.parametrize("existing", [False, True], ids=["new_folder", "on_disk"])
async def test_hostile_folder_names_never_reach_a_tmux_format_or_a_shell(hypivisor_factory, env_dirs, existing):
    """pi starts in exactly the approved folder (its registered cwd and the pane's), nothing a name spells runs,
    the session name is plain, and the spawn log lines carry no raw control or bidi characters."""
    home, _, tmuxdir = env_dirs
    (home / "proj").mkdir()
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="register")
    names = HOSTILE if existing else [n for n in HOSTILE if "\\" not in n]  # new_folder refuses a backslash
    async with await RegistryClient.connect(hv) as dash:
        for name in names:
            if existing:
                (home / "proj" / name).mkdir()
                params = {"path": f"proj/{name}"}
            else:
                params = {"path": "proj", "new_folder": name}
            res = await dash.call("spawn_agent", params, timeout=40)
            assert "result" in res, (name, res)
            folder = str((home / "proj" / name).resolve())
            assert res["result"]["path"] == folder and res["result"]["node"]["cwd"] == folder, name
            session = res["result"]["tmux_session"]
            assert session.startswith("pi-") and all(c.isalnum() or c in "-_" for c in session), session
            pane = tmux(tmuxdir, "display-message", "-p", "-t", f"={session}:", "#{pane_current_path}").stdout
            assert pane == folder + "\n", (name, pane)
    assert not list(home.rglob("PWNED*")), "a folder name was executed"
    assert sorted(p.name for p in (home / "proj").iterdir()) == sorted(names)
    spawn_lines = [ln for ln in hv.log_lines().splitlines() if '"spawning agent"' in ln or '"spawn failed"' in ln]
    assert len(spawn_lines) == len(names)
    for line in spawn_lines:
        assert not any(c in line for c in "\u202e\x1b\n\t"), line
        assert "\\u202e" in line or "\\u001b" in line or json.loads(line)["path"].isprintable(), line


async def test_a_tmux_template_without_c_keeps_names_inert_and_binds_each_spawn(hypivisor_factory, env_dirs, tmp_path):
    """The HYPI_SPAWN_COMMAND recipe for tmux (no ``-c``; the environment passed with ``-e``) runs pi in the
    folder without reading the name as a format, and two spawns on one running tmux server each get their own
    agent (the second pane gets its own spawn secret, not the server's environment)."""
    home, _, _ = env_dirs
    sock = tmp_path / "tmpl.sock"
    template = (f"tmux -S {sock} -f /dev/null new-session -d -s {{session}} -e HYPIVISOR_WS=\"$HYPIVISOR_WS\" "
                '-e HYPI_TOKEN="$HYPI_TOKEN" -e PI_SOCKET_SPAWN_ID="$PI_SOCKET_SPAWN_ID" pi')  # fmt: skip
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="register", HYPI_SPAWN_COMMAND=template)
    try:
        async with await RegistryClient.connect(hv) as dash:
            for name in ["#(cd;touch PWNED)", "#{pane_id}", "end;", "end\\;"]:
                (home / name).mkdir()
                for _ in range(2):
                    res = await dash.call("spawn_agent", {"path": name}, timeout=40)
                    assert "result" in res, (name, res)
                    assert res["result"]["node"]["cwd"] == str((home / name).resolve()), name
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], check=False, capture_output=True, timeout=10)
    assert not list(home.rglob("PWNED*")), "a folder name was executed"


async def test_a_spawn_is_bound_to_the_agent_it_started(hypivisor_factory, env_dirs):
    """Another node registering in the spawn's folder (or with a guessed secret) while the spawn waits does not
    satisfy it: only the registration carrying the spawn's secret does."""
    home, _, tmuxdir = env_dirs
    (home / "p").mkdir()
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="silent", HYPI_SPAWN_TIMEOUT="3")
    async with await RegistryClient.connect(hv) as dash, await RegistryClient.connect(hv) as rogue:
        await dash.event("init")
        spawn = asyncio.create_task(dash.call("spawn_agent", {"path": "p"}, timeout=30))
        for i in range(10):  # bounded: register strangers in the same folder while the spawn waits
            await asyncio.sleep(0.2)
            res = await rogue.call(
                "register",
                {
                    "id": f"rogue-{i}",
                    "machine": "m",
                    "cwd": str((home / "p").resolve()),
                    "port": 30000 + i,
                    "spawn_id": "guess-é\u202e" + str(i),
                },
            )
            assert "result" in res, res
        res = await spawn
        assert res["error"]["code"] == 1010, res
    assert sessions(tmuxdir) == [], "the timed-out spawn's session is still running"


async def test_spawns_are_limited_and_a_failed_spawn_leaves_nothing_behind(hypivisor_factory, env_dirs):
    home, _, tmuxdir = env_dirs
    (home / "p").mkdir()
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="silent", HYPI_SPAWN_TIMEOUT="3")
    async with await RegistryClient.connect(hv) as dash:
        ids = [await dash.send("spawn_agent", {"path": "p", "new_folder": f"n{i}"}) for i in range(8)]
        results = [await dash.reply(i, timeout=30) for i in ids]
    codes = sorted(r["error"]["code"] for r in results)
    assert codes.count(1008) >= 4 and set(codes) == {1008, 1010}, codes
    limited = [r for r in results if r["error"]["code"] == 1008]
    assert "already starting" in limited[0]["error"]["message"]
    assert list((home / "p").iterdir()) == [], "a failed spawn left its new folder behind"
    assert sessions(tmuxdir) == [], "a failed spawn left its tmux session running"


async def test_a_bad_path_gets_its_own_error_even_when_spawns_are_limited(hypivisor_factory, env_dirs):
    """Validation comes before the limits: while every spawn slot is taken a missing folder is still 1004."""
    _, _, tmuxdir = env_dirs
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="silent", HYPI_SPAWN_TIMEOUT="20")
    async with await RegistryClient.connect(hv) as dash:
        for i in range(4):
            await dash.send("spawn_agent", {"path": "~", "new_folder": f"n{i}"})
        assert await wait_until(lambda: len(sessions(tmuxdir)) == 4), sessions(tmuxdir)
        assert (await dash.call("spawn_agent", {"path": "missing"}))["error"]["code"] == 1004
        assert (await dash.call("spawn_agent", {"path": "~"}))["error"]["code"] == 1008


async def test_a_caller_leaving_mid_spawn_leaves_nothing_behind(hypivisor_factory, env_dirs):
    """The dashboard that asked goes away while pi starts: its session is killed and the new folder removed."""
    home, _, tmuxdir = env_dirs
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="silent", HYPI_SPAWN_TIMEOUT="60")
    dash = await RegistryClient.connect(hv)
    await dash.send("spawn_agent", {"path": "~", "new_folder": "left"})
    assert await wait_until(lambda: len(sessions(tmuxdir)) == 1), "the spawn never started"
    await dash.close()
    assert await wait_until(lambda: sessions(tmuxdir) == [] and not (home / "left").exists()), (
        sessions(tmuxdir),
        list(home.iterdir()),
    )


async def test_a_timed_out_template_spawn_kills_its_process_group(hypivisor_factory, env_dirs, tmp_path):
    home, _, _ = env_dirs
    pidfile = tmp_path / "bg.pid"
    hv = start(hypivisor_factory, env_dirs, HYPI_SPAWN_TIMEOUT="2",
               HYPI_SPAWN_COMMAND=f"sleep 300 & echo $! > {pidfile}; exec sleep 299")  # fmt: skip
    async with await RegistryClient.connect(hv) as dash:
        res = await dash.call("spawn_agent", {"path": "~", "new_folder": "made"}, timeout=30)
    assert res["error"]["code"] == 1010, res
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    assert await wait_until(gone), "the template's background process outlived the timed-out spawn"
    assert not (home / "made").exists()


BRIDGE_PI = """\
#!{python}
# A stand-in for pi whose shim side is the bridge tests' FakeShim: the real bridge registers this "pi".
import asyncio, os, sys, tempfile
from pathlib import Path
sys.path.insert(0, {repo!r})
from pi_socket.tests.fake_shim import FakeShim

async def main():
    keep = {{k: os.environ[k] for k in ("HYPIVISOR_WS", "HYPI_TOKEN", "PI_SOCKET_SPAWN_ID") if k in os.environ}}
    shim = FakeShim(Path(tempfile.mkdtemp()), env=keep, cwd=Path.cwd(), node_id="bridge-" + str(os.getpid()))
    await shim.start()
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_the_real_bridge_sends_the_spawn_secret_back(hypivisor_factory, env_dirs):
    """PI_SOCKET_SPAWN_ID reaches the bridge and comes back in its ``register``: the spawn resolves to that node."""
    home, bindir, _ = env_dirs
    (bindir / "pi").write_text(BRIDGE_PI.format(python=sys.executable, repo=str(Path(__file__).resolve().parents[1])))
    hv = start(hypivisor_factory, env_dirs, token="tok-1")
    async with await RegistryClient.connect(hv) as dash:
        res = await dash.call("spawn_agent", {"path": "~", "new_folder": "#(cd;touch PWNED) b;"}, timeout=40)
    assert "result" in res, res
    assert res["result"]["node"]["cwd"] == str((home / "#(cd;touch PWNED) b;").resolve())
    assert res["result"]["node_id"].startswith("bridge-")
    assert not list(home.rglob("PWNED*"))
