"""The rendered page: every section, numbers from the tables, links that resolve on disk,
escaped names, atomic replacement, and pages for empty and half-processed stores."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.report import build_report
from lamina.report.build import MARKER
from tests.report.stores import lamina

SECTIONS = (
    "overview",
    "statuses",
    "distributions",
    "signals",
    "flags",
    "duplicates",
    "clusters",
    "outliers",
    "tags",
    "problems",
    "provenance",
)


class Page(HTMLParser):
    """Every src/href, the ids, and the text of each element with an id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: dict[str, str] = {}
        self._open: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name) is not None:
                self.links.append((tag, found[name] or ""))
        if found.get("id"):
            self.ids[found["id"] or ""] = ""
            self._open.append(found["id"] or "")
        elif tag in ("b", "td", "p"):
            self._open.append("")

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1]:
            self.ids[self._open[-1]] += data

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("b", "td", "p", "section", "table", "img", "figure", "div"):
            self._open.pop()


def _page(index: Path) -> tuple[str, Page]:
    html = index.read_text(encoding="utf-8")
    return html, Page(html)


def _check_links(index: Path, page: Page) -> list[str]:
    """Every non-anchor link resolves to a file; returns the links."""
    links = [link for _, link in page.links if not link.startswith("#")]
    for link in links:
        assert not re.match(r"^[a-z]+:|^//", link), f"an outside URL: {link}"
        assert (index.parent / unquote(link)).is_file(), link
    return links


def test_every_section_is_there_and_counts_match(full_store: Store, full_report: Path) -> None:
    html, page = _page(full_report)
    assert full_report == full_store.root / "report" / "index.html"
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
        assert f'href="#{section}"' in html
    con = full_store.connect()
    assert page.ids["count-files"] == str(con.execute("select count(*) from files").fetchone()[0])
    images = con.execute("select count(distinct image_id) from files").fetchone()[0]
    assert page.ids["count-images"] == str(images)
    assert page.ids["count-status-junk"] == "2" and page.ids["count-status-broken"] == "1"
    for flag in ("dark", "blurry", "near_duplicate"):
        assert f'id="flag-{flag}"' in html and f'id="signal-{flag}"' in html
    assert 'id="cluster-map"' in html and "representative" in html
    assert "no tags" not in html.lower() and "cup of coffee" in html
    assert "Approved labels" in html and "No thumbnails have been made" not in html
    assert 'class="missing"' not in html  # every table exists


def test_every_link_resolves_to_a_file(full_report: Path) -> None:
    _, page = _page(full_report)
    links = _check_links(full_report, page)
    thumbs = [link for link in links if link.startswith("../thumbs/")]
    plots = [link for link in links if link.startswith("plots/")]
    assert len(set(thumbs)) >= 8  # every decodable image appears somewhere
    assert {"plots/cluster_map.png", "plots/formats.png", "plots/signal_dark.png"} <= set(plots)
    # An undecodable image has no thumbnail: a box with its path, never a broken <img>.
    assert re.search(r'<div class="ph">[^<]*cut\.jpg</div>', full_report.read_text())


def test_paths_and_labels_are_escaped(full_report: Path) -> None:
    html = full_report.read_text()
    assert "rocket &amp; &lt;b&gt;.png" in html
    assert "<b>.png" not in html


def test_a_rerun_replaces_the_report_in_one_step(full_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = build_report(full_store, out_dir=out, thumbnails=False)
    (out / "plots" / "stale.png").write_bytes(b"old")
    second = build_report(full_store, out_dir=out, thumbnails=False, title="again <now>")
    assert first == second == out / "index.html"
    assert not (out / "plots" / "stale.png").exists() and (out / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging left behind
    assert "<title>again &lt;now&gt;</title>" in second.read_text()
    _check_links(second, Page(second.read_text()))  # thumbnails linked from another folder


def test_a_folder_that_is_not_a_report_is_never_replaced(full_store: Store, tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(LaminaError, match="not a lamina report folder"):
        build_report(full_store, out_dir=tmp_path, thumbnails=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_missing_layers_say_which_command_makes_them(scan_only: Store) -> None:
    index = build_report(scan_only, thumbnails=False)
    html, page = _page(index)
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    for command in ("lamina sense", "lamina embed", "lamina tag --labels labels.txt"):
        assert f"<code>{command}</code>" in html
    assert page.ids["count-files"] == "12"
    # No thumbnails were made: every image is a placeholder box, and no <img> is broken.
    assert "../thumbs/" not in html and "No thumbnails have been made" in html
    _check_links(index, page)


def test_missing_packages_give_the_install_command(
    scan_only: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.report import build

    found = build.util.find_spec
    monkeypatch.setattr(build.util, "find_spec", lambda n: None if n == "jinja2" else found(n))
    with pytest.raises(LaminaError, match="needs jinja2") as caught:
        build_report(scan_only, thumbnails=False)
    assert caught.value.hint == "pip install 'lamina[report]'"


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    notice = "the source /x/<photos> does not exist\n  fix: check the path"
    index = build_report(Store.open(tmp_path / "store", create=True), notices=[notice])
    html, page = _page(index)
    assert '<p class="notice">the source /x/&lt;photos&gt; does not exist\n  fix:' in html
    assert "empty-store" in page.ids and "This store is empty" in html
    assert "<code>lamina scan SOURCE</code>" in html
    _check_links(index, page)


def test_a_source_without_images_says_so(tmp_path: Path) -> None:
    src = tmp_path / "docs"
    src.mkdir()
    (src / "readme.txt").write_text("no pictures here\n")
    lamina(tmp_path / "store", "scan", str(src))
    index = build_report(Store.open(tmp_path / "store"))
    html, page = _page(index)
    assert "No images were found in the sources" in page.ids["no-images"]
    assert page.ids["count-files"] == "1" and page.ids["count-images"] == "0"
    assert "Traceback" not in html
    _check_links(index, page)
