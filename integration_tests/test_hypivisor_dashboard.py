"""The dashboard port: built Pi-DE from HYPI_DASHBOARD_DIR, or a page that says how to build it."""

from __future__ import annotations

import urllib.error
import urllib.request

import websockets


def get(url: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_serves_built_dashboard_with_spa_fallback(hypivisor_factory, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>PI-DE INDEX</html>")
    (dist / "assets" / "app-123.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("outside")
    hv = hypivisor_factory(env={"HYPI_DASHBOARD_DIR": str(dist)})
    status, body, headers = get(hv.url("/", dashboard=True))
    assert status == 200 and "PI-DE INDEX" in body and headers["Cache-Control"] == "no-cache"
    status, body, headers = get(hv.url("/assets/app-123.js", dashboard=True))
    assert status == 200 and "console.log" in body and "immutable" in headers["Cache-Control"]
    assert get(hv.url("/agents/some-id", dashboard=True))[1] == "<html>PI-DE INDEX</html>"
    assert get(hv.url("/assets/missing.js", dashboard=True))[0] == 404
    assert "outside" not in get(hv.url("/%2e%2e/secret.txt", dashboard=True))[1]
    assert "not built" not in hv.stdout()


def test_not_built_page_says_how_to_build(hypivisor):
    status, body, _ = get(hypivisor.url("/", dashboard=True))
    assert status == 503 and "npm run build" in body and "make run" in body
    assert "Pi-DE not built" in hypivisor.stdout()


def test_healthz_on_both_ports(hypivisor):
    for dashboard in (False, True):
        status, body, _ = get(hypivisor.url("/healthz", dashboard=dashboard))
        assert status == 200 and '"status": "ok"' in body


async def test_dashboard_port_serves_the_registry_same_origin(hypivisor):
    origin = f"http://127.0.0.1:{hypivisor.dashboard_port}"
    async with websockets.connect(f"ws://127.0.0.1:{hypivisor.dashboard_port}/ws", origin=origin) as ws:
        assert '"event":"init"' in await ws.recv()


def test_dashboard_port_zero_disables_it(hypivisor_factory):
    hv = hypivisor_factory(dashboard=False)
    assert hv.dashboard_port == 0 and "dashboard" not in hv.stdout()
    assert get(hv.url("/healthz"))[0] == 200


def test_a_precompressed_sibling_goes_to_browsers_that_accept_gzip(hypivisor_factory, tmp_path):
    import gzip

    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>PI-DE INDEX</html>")
    code = b"console.log('app');\n" * 200
    (dist / "assets" / "app-1.js").write_bytes(code)
    (dist / "assets" / "app-1.js.gz").write_bytes(gzip.compress(code, 9))
    hv = hypivisor_factory(env={"HYPI_DASHBOARD_DIR": str(dist)})
    url = hv.url("/assets/app-1.js", dashboard=True)
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"}), timeout=5) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert "javascript" in resp.headers["Content-Type"]
        assert gzip.decompress(resp.read()) == code
    with urllib.request.urlopen(
        urllib.request.Request(url, headers={"Accept-Encoding": "identity"}), timeout=5
    ) as resp:
        assert resp.headers.get("Content-Encoding") is None and resp.read() == code
