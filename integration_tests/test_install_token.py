"""Secure with zero set-up: a hypivisor started without HYPI_TOKEN makes a private token file, prints the dashboard
link carrying it once, and requires it everywhere; this machine's bridges read the same file; Pi-DE takes the token
from the link, removes it from the address bar and keeps working after a reload. ``--no-token`` and ``HYPI_TOKEN``
keep their meaning. specs/security.md §5, specs/install.md."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import REPO_ROOT, RegistryClient
from integration_tests.harness.pi_proc import wait_until
from integration_tests.harness.pide import dashboard_url, ensure_dist

pytestmark = pytest.mark.slow


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_first_start_makes_a_private_token_requires_it_and_prints_the_link_once(hypivisor_factory):
    hv = hypivisor_factory(token_file=True)
    path = hv.token_path
    assert path.parent == hv.home / ".config" / "hyper-pi"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = hv.token
    assert token and len(token) >= 40
    out = hv.stdout()
    assert "token required" in out and f"http://127.0.0.1:{hv.dashboard_port}/#token={token}" in out
    assert "spawn_agent is disabled" not in hv.stderr() and "WARNING" not in hv.stderr()
    # the token is required on /ws (HTTP 401 before the upgrade) and accepted with it
    assert _status(hv.url("/ws")) == 401
    async with await RegistryClient.connect(hv) as dash:
        assert "result" in await dash.call("list_nodes")
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(hv.ws_url, open_timeout=5)
    # a restart reads the same file: same token; a log that is no terminal gets the path, not the token
    hv.stop()
    hv.start()
    assert hv.token == token
    assert token not in hv.stdout() and str(path) in hv.stdout() and "hypivisor url" in hv.stdout()
    assert token not in hv.log_lines(), "never logged"
    shown = subprocess.run(
        [sys.executable, "-m", "hypivisor", "url", "--dashboard-port", str(hv.dashboard_port)],
        env=hv.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.stdout.strip() == f"http://localhost:{hv.dashboard_port}/#token={token}"


async def test_hypi_token_overrides_and_no_token_keeps_the_tokenless_mode(hypivisor_factory):
    hv = hypivisor_factory(token="from-env", token_file=True)
    assert not hv.token_path.exists() and hv.token == "from-env"
    assert "#token=" not in hv.stdout()
    plain = hypivisor_factory()  # the harness default: --no-token
    assert "--no-token" in plain.argv and not plain.token_path.exists()
    assert "NO TOKEN" in plain.stdout() and _status(plain.url("/healthz")) == 200
    async with await RegistryClient.connect(plain) as dash:
        assert "result" in await dash.call("list_nodes")
    both = hypivisor_factory(token="x", args=["--no-token"], start=False)
    with pytest.raises(RuntimeError, match="contradict"):
        both.start()


def test_a_local_bridge_reads_the_token_file(hypivisor_factory, pi_home, start_pi, agent_client):
    """A real pi 0.73.1 whose environment has no HYPI_TOKEN: its bridge reads the file the hypivisor made in the
    same HOME, registers, and requires the token on its own agent port."""
    hv = hypivisor_factory(home=pi_home.home, token_file=True)
    pi = start_pi("0.73.1", mode="rpc", env={"HYPIVISOR_WS": hv.ws_url})
    assert "HYPI_TOKEN" not in pi.env

    async def listed() -> bool:
        async with await RegistryClient.connect(hv) as dash:
            res = await dash.call("list_nodes")
            return any(n["id"] == pi.node_id for n in res["result"]["nodes"])

    wait_until(lambda: asyncio.run(listed()), 20, "the bridge to register with the file's token")
    http = pi.url.replace("ws://", "http://")
    assert _status(http) == 401, "the agent port requires the token too"
    client = agent_client(f"{pi.url}?token={hv.token}")
    client.wait_for(lambda f: f.get("type") == "init_state")
    proxied = agent_client(hv.agent_url(pi.node_id), headers=hv.auth_headers)
    proxied.wait_for(lambda f: f.get("type") == "init_state")


@pytest.mark.browser
def test_the_first_start_link_signs_the_dashboard_in_and_leaves_the_address_bar(
    hypivisor_factory, agents, page_factory
):
    hv = hypivisor_factory(token_file=True, env={"HYPI_DASHBOARD_DIR": str(ensure_dist())})
    agents(hv, "n-tok", "/srv/tok")  # registers with the file's token, as a local bridge does
    link = next(w for w in hv.stdout().split() if "#token=" in w)
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(link)
    page.wait_for_selector("[data-node-id='n-tok']")
    assert page.url == dashboard_url(hv), "the token left the address bar"
    key = f"pi-de-token:ws://127.0.0.1:{hv.dashboard_port}"
    assert page.evaluate(f"localStorage.getItem('{key}')") == hv.token
    page.reload()
    page.wait_for_selector("[data-node-id='n-tok']")
    assert page.locator("[data-testid=token-screen]").count() == 0
    # without the link, a fresh browser is asked for the token
    other = page_factory(viewport={"width": 1280, "height": 800})
    other.goto(dashboard_url(hv))
    other.wait_for_selector("[data-testid=token-screen]")
