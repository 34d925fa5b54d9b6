"""The rendered page: every section, numbers from the tables, links that resolve on disk,
escaped names, atomic replacement, and pages for empty and half-processed stores."""

from __future__ import annotations

import html as html_module
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.report import build_report
from lamina.report.build import MARKER
from tests.report.stores import lamina

SECTIONS = (
    "act",
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
    """Every non-anchor link resolves to a file inside the report folder, except the links
    of thumbnails to their original files (file:// URLs that resolve to them); returns the
    links inside the folder."""
    links = []
    for tag, link in page.links:
        if link.startswith("#"):
            continue
        if link.startswith("file://"):
            assert tag == "a", link  # only a click opens an original, nothing loads it
            assert Path(unquote(urlparse(link).path)).is_file(), link
            continue
        assert not re.match(r"^[a-z]+:|^//", link), f"an outside URL: {link}"
        assert not link.startswith("../") and not link.startswith("/"), link
        assert (index.parent / unquote(link)).is_file(), link
        links.append(link)
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
    thumbs = [link for link in links if link.startswith("thumbs/")]
    plots = [link for link in links if link.startswith("plots/")]
    assert len(set(thumbs)) >= 8  # every decodable image appears somewhere
    copied = {
        p.relative_to(full_report.parent).as_posix() for p in full_report.parent.rglob("*.jpg")
    }
    assert copied == set(thumbs)  # the thumbnails shown, and only those, are in the folder
    assert {"plots/cluster_map.png", "plots/formats.png", "plots/signal_dark.png"} <= set(plots)
    # An undecodable image has no thumbnail: a box with its path, never a broken <img>.
    assert re.search(r'<div class="ph">[^<]*cut\.jpg</div>', full_report.read_text())


def _tiles(html: str) -> list[str]:
    return html.split('<div class="tile')[1:]


def test_every_tile_says_resolution_size_and_format_and_links_the_original(
    full_store: Store, full_report: Path
) -> None:
    html = full_report.read_text()
    source = full_store.sql("select any_value(source) s from files")["s"][0].as_py()
    tiles = _tiles(html)
    assert len(tiles) > 20
    for tile in tiles:
        if "<img" in tile:  # a thumbnail: a decodable image with a header
            assert re.search(r"\d+×\d+ · [\d.]+ (B|KB|MB) · [A-Z]+", tile), tile
        href = re.search(r'<a href="(file://[^"]+)"', tile)
        assert href, tile
        original = Path(unquote(urlparse(href.group(1)).path))
        assert original.is_file() and str(original).startswith(source)
        path = html_module.unescape(re.search(r'<div class="path">([^<]*)</div>', tile)[1])
        assert "…" not in path and original.as_posix().endswith(path)
    # A name with characters that need escaping in a URL and in HTML.
    assert 'href="file://' in html and "rocket%20%26%20%3Cb%3E.png" in html


def test_the_top_says_what_to_act_on(full_store: Store, full_report: Path) -> None:
    html = full_report.read_text()
    assert html.index('id="act"') < html.index('id="overview"')
    rows = full_store.sql(
        "select d.is_representative as rep, n.n, n.size from duplicates d join (select "
        "image_id, count(*) as n, any_value(size) as size from files where status <> 'missing' "
        "group by 1) n using (image_id)"
    ).to_pylist()
    freed = sum(r["size"] * (r["n"] - 1 if r["rep"] else r["n"]) for r in rows)
    assert freed > 0
    from lamina.report.build import _size

    top = page_html_between(html, 'id="act"', 'id="overview"')
    assert f'<li id="act-duplicates"><b>{_size(freed)}</b> could be freed' in top
    assert 'href="#duplicates"' in top and 'href="#problems"' in top
    assert '<li id="act-problems"><b>1</b> files are broken' in top  # cut.jpg
    assert 'href="#flag-dark"' in top
    # Run ids are in the provenance section at the end, not at the top.
    assert html.index('id="run-table"') > html.index('id="provenance"')


def page_html_between(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end)]


def test_a_moved_report_folder_shows_every_image(full_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "r"
    build_report(full_store, out_dir=out, thumbnails=False)
    moved = tmp_path / "elsewhere" / "shared-report"
    moved.parent.mkdir()
    shutil.move(out, moved)
    index = moved / "index.html"
    links = _check_links(index, Page(index.read_text()))
    assert sum(link.startswith("thumbs/") for link in links) >= 8


def test_a_report_inside_a_source_is_refused(full_store: Store) -> None:
    source = Path(full_store.sql("select any_value(source) s from files")["s"][0].as_py())
    before = sorted(p.name for p in source.rglob("*"))
    for target in (source / "report", source, source / "pets" / "r"):
        with pytest.raises(LaminaError, match="lies inside the source") as caught:
            build_report(full_store, out_dir=target, thumbnails=False)
        assert "choose a path outside it" in (caught.value.hint or "")
    assert sorted(p.name for p in source.rglob("*")) == before


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
    assert "thumbs/" not in html and "No thumbnails have been made" in html
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


def test_the_report_makes_only_the_thumbnails_it_shows(tmp_path: Path) -> None:
    """A collection of 30 images whose report shows one duplicate pair: two thumbnails
    are made, not 30 (at a million images, making every one took hours first)."""
    from PIL import Image

    from lamina.analysis.duplicates import DUPLICATES_SCHEMA
    from lamina.core.store import atomic_write_parquet
    from lamina.passes.thumbs import thumb_path

    src = tmp_path / "src"
    src.mkdir()
    for k in range(30):
        Image.new("RGB", (8, 8), (k * 8, 255 - k * 8, 40)).save(src / f"p{k:02d}.png")
    lamina(tmp_path / "store", "scan", str(src))
    store = Store.open(tmp_path / "store")
    ids = sorted(store.table("images")["image_id"].to_pylist())
    pair = [ids[3], ids[7]]
    table = pa.table(
        {
            "image_id": pair,
            "group_id": [pair[0]] * 2,
            "group_size": [2, 2],
            "representative": [pair[0]] * 2,
            "is_representative": [True, False],
            "kind": ["representative", "near"],
            "distance": [0, 3],
            "n_files": [1, 1],
            "keep_reason": ["oldest: test"] * 2,
        },
        schema=DUPLICATES_SCHEMA,
    )
    atomic_write_parquet(store.layer_dir("duplicates", "1-t") / "part-global.parquet", table)
    index = build_report(store, out_dir=tmp_path / "report")
    made = sorted(i for i in ids if thumb_path(store, i).is_file())
    assert made == sorted(pair)
    html = index.read_text()
    assert all(f"thumbs/{i[:2]}/{i}" in html for i in pair)
    assert store.sql("select count(*) as n from thumbs")["n"][0].as_py() == 2
