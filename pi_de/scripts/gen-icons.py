"""Render the PWA icons (public/icon-192.png, icon-512.png, icon-maskable-512.png) from the favicon's drawing.

Run from the repository: ``.venv/bin/python pi_de/scripts/gen-icons.py`` (needs Playwright's Chromium).
The maskable icon fills its square (the platform cuts its own shape) with the mark inside the 80 % safe zone.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from playwright.async_api import async_playwright

PUBLIC = Path(__file__).resolve().parents[1] / "public"
MARK = (
    '<path d="M7.5 10.5h17M12.5 10.5v13M19.5 10.5v10q0 3 3 3" stroke="#fff" stroke-width="3.2" fill="none" '
    'stroke-linecap="round" stroke-linejoin="round"/>'
)
ANY = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#3b6fd8"/>{MARK}</svg>'
MASKABLE = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="-6 -6 44 44"><rect x="-6" y="-6" width="44" height="44" '
    f'fill="#3b6fd8"/>{MARK}</svg>'
)


async def main() -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
        for name, svg, size in (
            ("icon-192.png", ANY, 192),
            ("icon-512.png", ANY, 512),
            ("icon-maskable-512.png", MASKABLE, 512),
        ):
            page = await browser.new_page(viewport={"width": size, "height": size})
            await page.set_content(
                f'<body style="margin:0">{svg.replace("<svg ", f"<svg width={size} height={size} ", 1)}</body>'
            )
            await page.screenshot(path=str(PUBLIC / name), omit_background=True)
            await page.close()
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
