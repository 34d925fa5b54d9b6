"""Render the report: the sections of `lamina.report.data`, plots and thumbnails, as one
static HTML page (`<store>/report/index.html`, plots in `plots/`, the thumbnails it shows
copied into `thumbs/`) that opens from disk.

The folder is self-contained: every image and plot is linked by a relative path inside it,
so it can be zipped, moved or copied to another machine. The only other links are to the
original files (`file://` URLs, for a reader on the same machine). No server, no CDN, no
script. The page and its files are written into a staging folder beside the target, then
swapped in with renames, so a reader never sees half a report. A target inside a source,
or a folder that holds anything but an earlier report, is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from importlib import metadata, util
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lamina.core.errors import LaminaError, StoreError
from lamina.core.store import Store
from lamina.report.context import Section, open_context
from lamina.report.data import collect, image_facts, image_ids

__all__ = ["REPORT_DIRNAME", "build_report"]

log = logging.getLogger(__name__)

REPORT_DIRNAME = "report"  # under the store root
MAP_PICTURES = 40  # medoid pictures drawn on the cluster map (more would hide the dots)
MARKER = ".lamina-report"  # says a folder holds a report, so replacing it loses nothing else
TEMPLATES = Path(__file__).parent / "templates"


def _make_thumbnails(store: Store, shown: set[str], progress: bool) -> str | None:
    """Make the missing thumbnails of the images the page shows (`shown`: a few hundred
    at most, whatever the collection's size); a note for the page when they could not be
    made."""
    if not store.table_files("images") or not shown:
        return None  # nothing to show; the overview says why
    from lamina.jobs.thumbs import make_thumbnails

    try:
        result = make_thumbnails(store, progress=progress, image_ids=shown)
    except LaminaError as exc:
        log.warning("report: no new thumbnails: %s", exc)
        return f"thumbnails were not made: {exc}"
    if result.get("failed_chunks"):
        return f"{result['failed_chunks']} chunks of thumbnails failed; re-run to retry them"
    return None


class _Thumbs:
    """The thumbnails the page shows, copied into the report folder on first use
    (`thumbs/<recipe>/<id[:2]>/<id>.jpg`); their URLs are relative to index.html."""

    def __init__(self, store: Store, report_dir: Path) -> None:
        self.report_dir = report_dir
        try:
            from lamina.passes.thumbs import thumb_path
        except ImportError:
            thumb_path = None
        self._path = thumb_path
        self.store = store
        self.seen: dict[str, str | None] = {}

    def __call__(self, image_id: str | None) -> str | None:
        if not image_id or self._path is None:
            return None
        if image_id not in self.seen:
            path = self.file(image_id)
            url = None
            if path is not None:
                dest = self.report_dir / "thumbs" / image_id[:2] / f"{image_id}{path.suffix}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                url = _url(dest, self.report_dir)
            self.seen[image_id] = url
        return self.seen[image_id]

    def made(self) -> bool:
        """Whether any thumbnail of the default recipe has been made in this store."""
        if self._path is None:
            return False
        return self._path(self.store, "00").parent.parent.is_dir()

    def file(self, image_id: str) -> Path | None:
        """The thumbnail file of an image, when it exists."""
        if self._path is None:
            return None
        path = self._path(self.store, image_id)
        return path if path.is_file() else None


def _url(path: Path, base: Path) -> str:
    """A relative, percent-encoded URL from folder `base` to `path`."""
    return quote(Path(os.path.relpath(path, base)).as_posix())


def _require() -> None:
    """Fail with the install command when the report's optional packages are missing."""
    missing = [name for name in ("matplotlib", "jinja2") if util.find_spec(name) is None]
    if missing:
        raise LaminaError(
            f"the HTML report needs {' and '.join(missing)}",
            hint="pip install 'lamina[report]'",
        )


def _commands(text: str | None) -> Any:
    """Escape `text`, then show `backticked` spans as code (a markupsafe.Markup)."""
    from markupsafe import Markup, escape

    escaped = str(escape(text or ""))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _shortener(sources: list[str]) -> Callable[[str | None], str]:
    """A filter that shows a path relative to its source when there is only one source."""
    prefix = sources[0].rstrip("/") + "/" if len(sources) == 1 else None

    def short(path: str | None) -> str:
        if path and prefix and path.startswith(prefix):
            return path[len(prefix) :]
        return path or ""

    return short


def _size(n: Any) -> str:
    value = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _num(n: Any, digits: int = 3) -> str:
    if n is None:
        return "—"
    if isinstance(n, int):
        return f"{n:,}"
    value = float(n)
    return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value).replace("T", " ").replace("+00:00", " UTC")


def _plots(
    sections: dict[str, Section],
    folder: Path,
    report_dir: Path,
    thumb_file: Callable[[str], Path | None],
) -> None:
    """Draw each section's plots into `folder`, storing their URLs (relative to
    `report_dir`, the folder of index.html) in the section data."""
    from lamina.report import plots

    def url(path: Path) -> str:
        return _url(path, report_dir)

    dist = sections["distributions"]
    if not dist.missing:
        d = dist.data
        d["plots"] = {
            "formats": url(
                plots.bar_chart(
                    [f["format"] for f in d["formats"]],
                    [f["n"] for f in d["formats"]],
                    folder / "formats.png",
                    title="formats",
                )
            ),
            "bytes": url(
                plots.histogram(
                    d["bytes"],
                    folder / "file_size.png",
                    title="file size",
                    xlabel="bytes",
                    log_x=True,
                )
            ),
            "megapixels": url(
                plots.histogram(
                    d["megapixels"],
                    folder / "megapixels.png",
                    title="megapixels",
                    xlabel="MP",
                    log_x=True,
                )
            ),
            "dims": url(
                plots.dims_scatter(
                    [r["width"] for r in d["dims"]],
                    [r["height"] for r in d["dims"]],
                    folder / "dimensions.png",
                )
            ),
        }
    sig = sections["signals"]
    for rule in sig.data.get("rules", []):
        direction = f"{rule['flag']} threshold"
        rule["plot"] = url(
            plots.histogram(
                rule["values"],
                folder / f"signal_{rule['flag']}.png",
                title=f"{rule['flag']}: {rule['column']}",
                xlabel=rule["column"],
                lines=rule["lines"],
                line_label=direction,
                log_y=rule["column"].endswith("_score"),
            )
        )
    space = sections["clusters"]
    if not space.missing:
        s = space.data
        # Every cluster's number at its medoid; pictures for the largest MAP_PICTURES.
        marks = [
            (
                float(m["x"]),
                float(m["y"]),
                str(m["cluster"]),
                thumb_file(m["image_id"]) if k < MAP_PICTURES else None,
            )
            for k, m in enumerate(s["medoids"])
            if m.get("x") is not None
        ]
        title = f"{s['model']}: {s['layout']} layout, {s['n_clusters']} clusters"
        s["plot"] = url(
            plots.cluster_scatter(
                s["x"], s["y"], s["cluster"], folder / "cluster_map.png", medoids=marks, title=title
            )
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Replace `target` with `staging` by renames (the old report is removed after)."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _check_target(target: Path) -> None:
    """Refuse to replace a folder that holds anything but an earlier report (sources and
    recorded files are refused before, by `check_output_path`)."""
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / MARKER).is_file())
    ):
        raise LaminaError(
            f"{target} exists and is not a lamina report folder, so it is not replaced",
            hint="choose a new or empty folder with -o",
        )


def _original(path: str | None) -> str | None:
    """A file:// URL of an original file (percent-encoded), or None for a relative path."""
    if not path or not Path(path).is_absolute():
        return None
    return Path(path).as_uri()


def _title(store: Store, sections: dict[str, Section]) -> str:
    sources = sections["overview"].data.get("sources", [])
    names = ", ".join(Path(s["source"]).name or s["source"] for s in sources[:3])
    return f"lamina report: {names}" if names else f"lamina report: {store.root}"


def build_report(
    store: Store | str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    thumbnails: bool = True,
    gallery_size: int = 24,
    title: str | None = None,
    progress: bool = False,
    notices: Sequence[str] = (),
    force_into_source: bool = False,
) -> Path:
    """Write the HTML report of `store` and return the path of its index.html.

    `out_dir` defaults to `<store>/report`. With `thumbnails`, the missing thumbnails of the
    images the page shows are made (a resumable pass over those images only); without,
    the thumbnails already made are used and the other images show their path in a box.
    Galleries show at most `gallery_size` images.
    `notices` are shown first, in a box (e.g. "the source /x does not exist" from
    `lamina run`). `out_dir` is checked as any output folder
    (`lamina.core.outputs.check_output_path`): never inside a source unless
    `force_into_source`, never among the store's tables.

    Example:
        >>> build_report(lamina.open())  # doctest: +SKIP
        PosixPath('/data/store/report/index.html')
    """
    _require()
    import jinja2

    if not isinstance(store, Store):
        store = Store.open(store)
    if gallery_size < 1:
        raise LaminaError(f"gallery_size must be at least 1, not {gallery_size}")
    target = store.root / REPORT_DIRNAME
    if out_dir:
        from lamina.core.outputs import check_output_path

        target = check_output_path(store, out_dir, folder=True, force_into_source=force_into_source)
    _check_target(target)
    sections = collect(store, gallery_size=gallery_size)
    by_id = {s.id: s for s in sections}
    shown = image_ids(sections)
    thumb_note = _make_thumbnails(store, shown, progress) if thumbnails else None
    facts = image_facts(open_context(store), shown)
    staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        staging.mkdir(parents=True)
        # URLs are relative to the folder they are written in, which becomes `target`.
        thumbs = _Thumbs(store, staging)
        _plots(by_id, staging / "plots", staging, thumbs.file)
        (staging / MARKER).write_text("written by `lamina report`; replaced on each run\n")
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        sources = [src["source"] for src in by_id["overview"].data.get("sources", [])]
        env.filters.update(
            commands=_commands, size=_size, num=_num, when=_when, short=_shortener(sources)
        )
        html = env.get_template("report.html.j2").render(
            title=title or _title(store, by_id),
            sections=sections,
            s=by_id,
            thumb=thumbs,
            facts=facts,
            original=_original,
            thumb_note=thumb_note,
            notices=list(notices),
            # Say why there are no pictures only when none were ever made.
            no_thumbnails=not thumbnails and not thumbs.made(),
            generated=dt.datetime.now(dt.UTC),
            version=metadata.version("lamina"),
            store_root=str(store.root),
        )
        (staging / "index.html").write_text(html, encoding="utf-8")
        _swap_in(staging, target)
    except OSError as exc:
        raise StoreError(
            f"cannot write the report to {target}: {exc.strerror or exc}",
            hint="choose a writable folder with -o, or free some disk space",
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "index.html"
