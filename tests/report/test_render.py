"""The report in a real browser (Debian's headless Chromium through Playwright): no console
errors, every image loads, captions fit their tiles, also after the folder was moved; a
full-page screenshot of each is kept in the test's tmp dir."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from lamina.core.store import Store
from lamina.report import build_report

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


def _render(index: Path, shot: Path) -> dict[str, Any]:
    """Open the page in Chromium, load every image, take a full-page screenshot; what the
    browser said (console messages, failed requests) and each image's state."""
    sync_playwright = _sync_playwright()
    messages: list[tuple[str, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            page.on("requestfailed", lambda r: messages.append(("requestfailed", r.url)))
            page.goto(index.as_uri(), wait_until="load")
            # Gallery images load lazily: load them all now, as scrolling the page would.
            page.evaluate(
                "() => Promise.all(Array.from(document.images).map(i => {"
                " i.loading = 'eager'; return i.decode().catch(() => null); }))"
            )
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.getAttribute('src'),"
                " i.complete && i.naturalWidth > 0])"
            )
            # Captions never cut off: no tile's text is wider than its tile.
            clipped = page.evaluate(
                "() => Array.from(document.querySelectorAll('.tile')).filter(t =>"
                " t.scrollWidth > t.clientWidth + 1).length"
            )
            title = page.title()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return {"messages": messages, "images": images, "title": title, "clipped": clipped}


def test_the_page_renders_in_chromium(full_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    seen = _render(full_report, shot)
    bad = ("error", "warning", "pageerror", "requestfailed")
    assert [m for m in seen["messages"] if m[0] in bad] == []
    images = seen["images"]
    assert len(images) > 20
    assert [src for src, ok in images if not ok] == []
    assert any(src.startswith("thumbs/") for src, _ in images)
    assert seen["title"].startswith("lamina report: ") and seen["clipped"] == 0
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_a_moved_report_renders_every_image(full_store: Store, tmp_path: Path) -> None:
    """Build with -o, move the folder elsewhere (as zipping and unzipping on another
    machine would), open it there: every image loads, nothing fails."""
    built = build_report(full_store, out_dir=tmp_path / "report")
    moved = tmp_path / "moved" / "report-copy"
    moved.parent.mkdir()
    shutil.move(built.parent, moved)
    seen = _render(moved / "index.html", tmp_path / "moved-report.png")
    assert [m for m in seen["messages"] if m[0] in ("error", "pageerror", "requestfailed")] == []
    images = seen["images"]
    assert len(images) > 20 and [src for src, ok in images if not ok] == []
    assert all(not src.startswith("../") for src, _ in images)
    assert (tmp_path / "moved-report.png").stat().st_size > 10_000
