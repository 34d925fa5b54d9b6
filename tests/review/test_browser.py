"""The review app in a real browser (Debian's headless Chromium through Playwright, as
the report's test drives it): filter, page, open an image, approve labels, decide a
duplicate group, mark rejects, then read the rows back with `lamina sql`; no console
errors; a screenshot of each view in the test's `artefacts/` folder (and in
$LAMINA_SCREENSHOTS when set: `docs/img` for the README)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from lamina.cli import main
from lamina.core.store import Store
from tests.report.test_render import ARGS, CHROMIUM, _sync_playwright
from tests.review.conftest import Served

WHO = "ana-in-browser"


def sql(store: Store, query: str) -> list[dict[str, Any]]:
    """Rows of `lamina sql --json`, as a person would check them."""
    result = CliRunner().invoke(
        main, ["--store", str(store.root), "sql", query, "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def shoot(page: Any, folder: Path, name: str) -> None:
    """A full-page screenshot once every image (lazy ones too) has loaded; every image
    must have pixels."""
    page.evaluate(
        "() => Promise.all(Array.from(document.images).map(i => {"
        " i.loading = 'eager'; return i.decode().catch(() => null); }))"
    )
    broken = page.evaluate(
        "() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)"
    )
    assert not broken, broken
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    extra = os.environ.get("LAMINA_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / f"{name}.png", Path(extra) / f"app-{name}.png")


def click_and_reload(page: Any, selector: str) -> None:
    """Click a decision button and wait for the page the app reloads after recording it."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def test_every_decision_end_to_end_in_chromium(
    served: Served, store: Store, tmp_path: Path
) -> None:
    sync_playwright = _sync_playwright()
    shots = tmp_path / "artefacts"
    messages: list[tuple[str, str]] = []
    ids = {
        r["rel_path"]: r["image_id"]
        for r in sql(store, "select rel_path, image_id from files where image_id is not null")
    }
    blurry = sql(
        store,
        "select count(*) as n from files f join flags using (image_id) "
        "where list_contains(flags, 'blurry') and f.status <> 'missing'",
    )[0]["n"]
    present = sql(
        store, "select count(*) as n from files where image_id is not null and status <> 'missing'"
    )[0]["n"]
    group = sql(
        store,
        "select group_id, list(image_id order by image_id) as members, "
        "max_by(image_id, is_representative) as keeper from duplicates "
        "where group_size > 1 group by 1 order by 1 limit 1",
    )[0]
    from lamina.index.vectors import build_index

    build_index(store)  # as `lamina similar` would: the image view then lists neighbours
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            page.on("requestfailed", lambda r: messages.append(("requestfailed", r.url)))
            page.goto(served.url + "/", wait_until="load")
            page.fill("#who", WHO)
            page.dispatch_event("#who", "change")
            assert page.locator(".tile").count() == present
            assert page.inner_text("#count").startswith(f"{present} files")
            shoot(page, shots, "grid")

            # Filter: the blurry ones, as many as SQL counts.
            page.select_option("select[name=flag]", "blurry")
            with page.expect_navigation():
                page.click("#apply")
            assert "flag=blurry" in page.url
            assert page.locator(".tile").count() == blurry
            shoot(page, shots, "grid-filtered")

            # Page: 4 per page, the second page holds the next 4 by path.
            page.goto(served.url + "/?size=4", wait_until="load")
            first = page.locator(".tile").evaluate_all("ts => ts.map(t => t.dataset.id)")
            with page.expect_navigation():
                page.click("#next")
            second = page.locator(".tile").evaluate_all("ts => ts.map(t => t.dataset.id)")
            assert len(first) == 4 and len(second) == 4 and not set(first) & set(second)
            assert "page 2 of" in page.inner_text("#count")

            # A bad SQL condition is shown in the page; the app keeps serving.
            page.goto(served.url + "/?where=nonsense_column+%3E+1", wait_until="load")
            assert "nonsense_column" in page.inner_text("#filter-error")
            page.goto(served.url + "/?where=size+%3E+30000", wait_until="load")
            big = "select count(*) as n from files where image_id is not null and size > 30000"
            assert page.locator(".tile").count() == sql(store, big)[0]["n"] > 0

            # Open an image, approve its labels (two of its own and one typed).
            coffee = ids["food/coffee.jpg"]
            page.goto(served.url + "/", wait_until="load")
            with page.expect_navigation():
                page.click(f'.tile[data-id="{coffee}"] a')
            assert page.url.endswith(f"/image/{coffee}")
            assert page.locator("#neighbours .member").count() > 0
            shoot(page, shots, "image")
            boxes = page.locator("input.label")
            for k in range(boxes.count()):
                boxes.nth(k).check()
            wanted = boxes.evaluate_all("bs => bs.map(b => b.value)")
            page.fill("#extra", "Espresso")
            click_and_reload(page, "#save-labels")
            assert "espresso" in page.inner_text("#approved")

            # Reject it.
            click_and_reload(page, "#reject")
            assert page.inner_text("#mark") == "reject"

            # Duplicate groups: accept the suggested keeper of the first group.
            page.goto(served.url + "/duplicates", wait_until="load")
            shoot(page, shots, "duplicates")
            click_and_reload(page, f'button.accept[data-group="{group["group_id"]}"]')

            # Bulk: reject two selected tiles of the grid, keep a third.
            page.goto(served.url + "/", wait_until="load")
            tiles = page.locator("input.sel")
            chosen = [tiles.nth(k).get_attribute("data-id") for k in range(2)]
            tiles.nth(0).check()
            tiles.nth(1).check()
            click_and_reload(page, "#reject")
            kept = page.locator("input.sel").nth(2).get_attribute("data-id")
            page.locator("input.sel").nth(2).check()
            click_and_reload(page, "#keep")
            assert page.locator(".badge.reject").count() >= 2

            page.goto(served.url + "/clusters", wait_until="load")
            assert (
                page.locator(".member.cluster").count()
                == sql(store, "select count(distinct cluster) as n from clusters")[0]["n"]
            )
            shoot(page, shots, "clusters")
        finally:
            browser.close()

    assert not [m for m in messages if m[0] in ("error", "pageerror", "requestfailed")], messages

    approvals = sql(
        store, f"select image_id, action, labels, who, note from approvals where who = '{WHO}'"
    )
    assert approvals == [
        {
            "image_id": coffee,
            "action": "set",
            "labels": [*wanted, "espresso"],
            "who": WHO,
            "note": "lamina app",
        }
    ]
    marks = sql(
        store,
        "select image_id, decision from decisions "
        f"where kind = 'mark' and who = '{WHO}' order by image_id",
    )
    expected = sorted({(coffee, "reject"), *((c, "reject") for c in chosen), (kept, "keep")})
    assert sorted((m["image_id"], m["decision"]) for m in marks) == expected
    dups = sql(
        store,
        "select image_id, decision, group_id from decisions "
        f"where kind = 'duplicate' and who = '{WHO}' order by image_id",
    )
    assert dups == [
        {
            "image_id": m,
            "decision": "keep" if m == group["keeper"] else "discard",
            "group_id": group["group_id"],
        }
        for m in group["members"]
    ]
