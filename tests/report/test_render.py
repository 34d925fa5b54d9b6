"""The report in a real browser (Debian's headless Chromium through Playwright): no console
errors, every image loads, and a full-page screenshot is taken."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "playwright is not installed (pip install playwright; never `playwright install`)"
        )
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


def test_the_page_renders_in_chromium(full_report: Path, tmp_path: Path) -> None:
    sync_playwright = _sync_playwright()
    messages: list[tuple[str, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            page.on("requestfailed", lambda r: messages.append(("requestfailed", r.url)))
            page.goto(full_report.as_uri(), wait_until="load")
            # Gallery images load lazily: load them all now, as scrolling the page would.
            page.evaluate(
                "() => Promise.all(Array.from(document.images).map(i => {"
                " i.loading = 'eager'; return i.decode().catch(() => null); }))"
            )
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.getAttribute('src'),"
                " i.complete && i.naturalWidth > 0])"
            )
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert [m for m in messages if m[0] in ("error", "pageerror", "requestfailed")] == []
    assert len(images) > 20
    assert [src for src, ok in images if not ok] == []
    assert any(src.startswith("../thumbs/") for src, _ in images)
    assert title.startswith("lamina report: ")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
