"""Cross-site WebSocket hijacking, tested in REAL Chromium (specs/security.md §CSWSH).

A page served from another local origin (``http.server`` on its own loopback
port) runs ``new WebSocket(...)`` against ``/ws``, ``/ws/agent/<id>`` (the
hypivisor's proxy) and the agent port itself (a real bridge), and reports
``open`` or ``error``. The same page served from an allowed origin
(``HYPI_ALLOWED_ORIGINS``) opens all three; the hypivisor's own origin opens
them too. Without a token configured the Origin check is the only thing
between a web page and an agent that runs bash, so it is tested without one;
with a token, a foreign page that even knows the token is still refused.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from integration_tests.test_fuzz_ws import Loop
from pi_socket.tests.fake_shim import FakeShim

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

PROBE_JS = """([urls, protocols]) => Promise.all(urls.map(u => new Promise(done => {
  let ws; try { ws = protocols ? new WebSocket(u, protocols) : new WebSocket(u); } catch (e) { return done("throw"); }
  const t = setTimeout(() => done("timeout"), 8000);
  ws.onopen = () => { clearTimeout(t); ws.close(); done("open"); };
  ws.onerror = () => { clearTimeout(t); done("error"); };
})))"""
PAGE = "<!doctype html><meta charset=utf-8><title>probe</title><p>an ordinary page on its own origin</p>"


class Site:
    """A tiny static site on its own loopback port: one origin."""

    def __init__(self, root: Path, host: str = "127.0.0.1"):
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text(PAGE)
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer((host, 0), handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://{'localhost' if host == '127.0.0.1' else host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def stack(hypivisor_factory, tmp_path):
    """A real hypivisor and a real bridge registered with it; an allowed site and an evil site."""
    good, evil = Site(tmp_path / "good"), Site(tmp_path / "evil")
    env = {"HYPI_ALLOWED_ORIGINS": good.origin}
    hv = hypivisor_factory(env=env)
    loop = Loop()
    fake = FakeShim(tmp_path / "bridge", env={**env, "HYPIVISOR_WS": hv.ws_url}, node_id="victim")
    (tmp_path / "bridge").mkdir()
    loop.run(fake.start())
    try:
        _wait_registered(hv, "victim")
        yield hv, fake, good, evil
    finally:
        loop.run(fake.stop())
        loop.close()
        good.close()
        evil.close()


def _wait_registered(hv, node_id: str, timeout: float = 10.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(hv.url("/healthz"), timeout=2) as r:
            if json.load(r)["nodes"] >= 1:
                return
        time.sleep(0.1)
    raise AssertionError(f"{node_id} never registered")


def probe(browser, page_url: str, urls: list[str], protocols: list[str] | None = None) -> list[str]:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(page_url)
        assert page.evaluate("location.origin") == page_url.rstrip("/").rsplit("/", 0)[0].rstrip("/")
        return page.evaluate(PROBE_JS, [urls, protocols])
    finally:
        ctx.close()


def endpoints(hv, fake) -> list[str]:
    return [hv.ws_url, hv.agent_url("victim"), f"ws://127.0.0.1:{fake.port}/"]


def test_a_foreign_page_cannot_open_any_endpoint_but_an_allowed_one_can(browser, stack):
    hv, fake, good, evil = stack
    urls = endpoints(hv, fake)
    assert probe(browser, good.origin + "/", urls) == ["open", "open", "open"]
    clients_before = sum(1 for r in fake.log_lines() if r.get("msg") == "client connected")
    assert probe(browser, evil.origin + "/", urls) == ["error", "error", "error"]
    # nothing reached the agent from the foreign page: no new client, no request to "pi"
    assert sum(1 for r in fake.log_lines() if r.get("msg") == "client connected") == clients_before
    assert fake.sent("send") == []
    # and the refusals were the Origin check (403), visible in both logs
    hv_records = [json.loads(x) for x in hv.log_lines().splitlines() if x.strip()]
    assert sum(1 for r in hv_records if r.get("status") == 403) >= 2, "both hypivisor endpoints refused with 403"
    assert any(r.get("msg") == "handshake refused" and r.get("status") == 403 for r in fake.log_lines())


def test_the_dashboards_own_origin_is_allowed(browser, stack):
    hv, fake, good, evil = stack
    # the hypivisor serves Pi-DE (here its "not built" page) on both ports; that origin may open everything
    for dashboard in (False, True):
        assert probe(browser, hv.url("/", dashboard=dashboard), endpoints(hv, fake)[:2]) == ["open", "open"]


def test_with_a_token_a_foreign_page_is_refused_even_when_it_knows_the_token(browser, hypivisor_factory, tmp_path):
    good, evil = Site(tmp_path / "good"), Site(tmp_path / "evil")
    token = "cswsh-token-4242"
    hv = hypivisor_factory(token=token, env={"HYPI_ALLOWED_ORIGINS": good.origin})
    loop = Loop()
    (tmp_path / "bridge").mkdir()
    fake = FakeShim(
        tmp_path / "bridge",
        node_id="victim",
        env={"HYPI_TOKEN": token, "HYPI_ALLOWED_ORIGINS": good.origin, "HYPIVISOR_WS": hv.ws_url},
    )
    loop.run(fake.start())
    try:
        _wait_registered(hv, "victim")
        import base64

        protos = ["hypi.v1", "hypi-token." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")]
        urls = endpoints(hv, fake)
        assert probe(browser, good.origin + "/", urls) == ["error"] * 3  # no token: 401
        assert probe(browser, good.origin + "/", urls, protos) == ["open"] * 3
        assert probe(browser, good.origin + "/", urls, ["hypi.v1", "hypi-token.d3Jvbmc"]) == ["error"] * 3
        assert probe(browser, evil.origin + "/", urls, protos) == ["error"] * 3  # 403 whatever it carries
    finally:
        loop.run(fake.stop())
        loop.close()
        good.close()
        evil.close()
