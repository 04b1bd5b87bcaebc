"""Serving the built Pi-DE (``pi_de/dist``), or a page that says how to build it.

A single-page app: unknown paths without a file extension get ``index.html``
so client-side routes survive a reload; ``/assets/*`` are content-hashed by
Vite and cached for a year; ``index.html`` is never cached so a rebuild shows
up at once. Paths are resolved and must stay inside the dist folder.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from aiohttp import web

from pi_socket import __version__

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pi-DE is not built</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
code{{background:#eee;padding:.1rem .3rem;border-radius:3px}}</style></head>
<body><h1>Pi-DE is not built</h1>
<p>The hypivisor {version} is running, but there is no built dashboard in
<code>{folder}</code>.</p>
<p>Build it with <code>make run</code> from the repository root, or
<code>cd pi_de &amp;&amp; npm install &amp;&amp; npm run build</code>, then reload this page
(or point <code>HYPI_DASHBOARD_DIR</code> at a built copy).</p>
<p>The registry is up at <code>/ws</code> and agents at <code>/ws/agent/&lt;id&gt;</code>.</p>
</body></html>
"""


def _inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([path, root]) == str(root)
    except ValueError:
        return False


def pick_file(root: Path, url_path: str) -> Path | None:
    """The file to serve for ``url_path``, SPA fallback included; None = 404.

    A path the file system cannot take (a NUL byte, an unencodable character, a name too long) is a 404,
    never an error."""
    rel = url_path.lstrip("/") or "index.html"
    try:
        candidate = Path(os.path.realpath(root / rel))
        if _inside(candidate, root) and candidate.is_file():
            return candidate
    except (OSError, ValueError):
        return None
    if "." not in rel.rsplit("/", 1)[-1]:
        index = root / "index.html"
        return index if index.is_file() else None
    return None


def make_handler(dist: Path):
    async def serve(request: web.Request) -> web.StreamResponse:
        root = Path(os.path.realpath(dist))
        if not (root / "index.html").is_file():
            page = NOT_BUILT.format(version=__version__, folder=html.escape(str(dist)))
            return web.Response(text=page, content_type="text/html", status=503, headers={"Cache-Control": "no-store"})
        target = pick_file(root, request.path)
        if target is None:
            raise web.HTTPNotFound(text="not found")
        cache = "public, max-age=31536000, immutable" if "/assets/" in request.path else "no-cache"
        return web.FileResponse(target, headers={"Cache-Control": cache})

    return serve
