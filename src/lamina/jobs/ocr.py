"""`lamina ocr`: the text printed in the images that have some (the `ocr` pass, resumable),
and `lamina search --text`: the images whose text holds a phrase.

Selective by default: the images flagged `text_heavy` by `lamina sense` (documents,
screenshots, labels); `where` takes any `lamina select` condition instead, `all_images`
every image. When the store has segments (`lamina segment`), the `segment_text` pass then
places the lines read in the segments that hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store

DEFAULT_WHERE = "text_heavy"


@dataclass(frozen=True)
class OcrConfig:
    """What `lamina ocr` takes: the engine spec, which images (`where`, else every image
    with `all_images`, else the text-heavy ones), `max_images` (the first N of those by
    image id), the long side read and the confidence floor of a line."""

    engine: str = "rapidocr"
    where: str | None = None
    all_images: bool = False
    max_images: int | None = None
    max_side: int = 1600
    min_confidence: float = 0.5
    workers: int | None = None
    progress: bool = True


@dataclass
class OcrResult:
    """What the run did: images selected, read now, already read, with text, errors."""

    run_id: str
    selection: str
    selected: int
    processed: int
    already_done: int
    with_text: int
    errors: int
    layer: str
    counts: dict[str, Any] = field(default_factory=dict)


def selected_images(store: Store, where: str | None, all_images: bool) -> tuple[str, list[str]]:
    """`(what was selected, image ids)` for a selective pass: every image, the images of a
    `--where` condition, or the text-heavy ones (which needs `lamina sense`'s flags).

    Example:
        >>> selected_images(lamina.open(), None, False)  # doctest: +SKIP
        ('text_heavy', ['3f9c…', …])
    """
    from lamina.core.runner import image_inputs
    from lamina.jobs.select import SelectConfig, select

    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    if all_images:
        return "all", image_inputs(store)["image_id"].to_pylist()
    if where is None:
        if "flags" not in store.available_tables():
            raise LaminaError(
                "no flags yet: OCR reads the images flagged text_heavy by default",
                hint="run `lamina sense` first, or give --where CONDITION or --all",
            )
        where = DEFAULT_WHERE
    return where, select(store, SelectConfig(where, ids=True)).lines


def pass_config(config: OcrConfig) -> dict[str, Any]:
    """The ocr pass's config from the job's (one place, for the verb and the stage).

    Example:
        >>> pass_config(OcrConfig(engine="tesseract"))["engine"]
        'tesseract'
    """
    from lamina.executors.local import default_workers

    threads = max(1, default_workers() // config.workers) if config.workers else 1
    return {
        "engine": config.engine,
        "max_side": config.max_side,
        "min_confidence": config.min_confidence,
        "threads": threads,
    }


def ocr(store: Store, config: OcrConfig = OcrConfig()) -> OcrResult:
    """Read the text of the selected images (resumable: images read before are skipped).

    Example:
        >>> config = OcrConfig(where="rel_path like 'scans/%'")
        >>> lamina.ocr(lamina.open(), config).with_text  # doctest: +SKIP
        118
    """
    from lamina.backends.ocr import check_engine
    from lamina.core.passes import get_pass
    from lamina.core.runner import run_passes

    check_engine(config.engine)  # before selecting: the install command comes first
    selection, ids = selected_images(store, config.where, config.all_images)
    ids = sorted(ids)[: config.max_images] if config.max_images else ids
    passes: list[tuple[str, dict[str, Any] | None]] = [("ocr", pass_config(config))]
    if store.table_files("segment"):  # text inside each segment (`segment_text`)
        passes.append(("segment_text", None))
    result = run_passes(
        store,
        passes,
        command="ocr",
        workers=config.workers,
        progress=config.progress,
        image_ids=ids,
    )
    counts = result["ocr"]
    layer = get_pass("ocr", pass_config(config)).layer_id
    with_text = 0
    if ids and store.layer_dirs("ocr"):
        with_text = int(
            store.sql("select count(*) from ocr where error is null and n_lines > 0")
            .column(0)[0]
            .as_py()
        )
    return OcrResult(
        run_id=str(result["run_id"]),
        selection=selection,
        selected=len(ids),
        processed=int(counts.get("processed", 0)),
        already_done=int(counts.get("already_done", 0)),
        with_text=with_text,
        errors=int(counts.get("error_rows", 0)),
        layer=layer,
        counts=counts,
    )


@dataclass(frozen=True)
class TextSearchConfig:
    """What `lamina search --text` takes: the phrase and how many images to return."""

    query: str
    k: int = 20


@dataclass
class TextHit:
    """One image whose OCR text holds the phrase: its path, the matching lines, the number
    of matches and the mean confidence of its text."""

    image_id: str
    path: str | None
    matches: int
    lines: list[str]
    mean_confidence: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def normalise(text: str) -> str:
    """Lower case, accents off, runs of white space as one space: how text is matched.

    Example:
        >>> normalise("  Species\\n PLANTARUM  ")
        'species plantarum'
    """
    import unicodedata

    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().split())


# The phrase is a bound parameter (never spliced); matching is a plain substring test on
# the normalised text (DuckDB's FTS extension would need an install, which offline stores
# cannot do, and ranks words, not phrases). `strip_accents(lower(...))` mirrors `normalise`.
SEARCH_SQL = """
with norm as (
    select image_id, mean_confidence, lines,
           regexp_replace(strip_accents(lower(text)), '\\s+', ' ', 'g') as t
    from ocr where error is null and text <> ''
), hit as (
    select image_id, mean_confidence, lines,
           (length(t) - length(replace(t, $q, ''))) // length($q) as matches
    from norm where contains(t, $q)
)
select h.image_id, p.path, h.matches, h.mean_confidence, [l.text for l in h.lines] as lines
from hit h
left join (
    select image_id, min(file_path(source, rel_path)) as path from files
    where status <> 'missing' and image_id is not null group by image_id
) p using (image_id)
order by h.matches desc, h.mean_confidence desc nulls last, h.image_id
limit $k
"""


def search_text(store: Store, config: TextSearchConfig) -> list[TextHit]:
    """The images whose OCR text holds `query` (case, accents and white space ignored),
    most matches first.

    Example:
        >>> store = lamina.open("store", create=True)
        >>> _ = lamina.scan(store, lamina.ScanConfig(sources=("photos",), progress=False))
        >>> _ = lamina.ocr(store, OcrConfig(all_images=True, workers=1, progress=False))
        >>> [h.lines for h in search_text(store, TextSearchConfig("linnaeus"))]
        [['Systema Naturae, Linnaeus 1758']]
    """
    query = normalise(config.query)
    if not query:
        raise LaminaError("the text to search for is empty", hint='lamina search --text "word"')
    if not store.layer_dirs("ocr"):
        raise LaminaError("no OCR text in this store yet", hint="run `lamina ocr` first")
    rows = store.connect().execute(SEARCH_SQL, {"q": query, "k": config.k}).fetchall()
    return [
        TextHit(
            image_id=r[0],
            path=r[1],
            matches=int(r[2]),
            lines=[line for line in r[4] or [] if query in normalise(line)],
            mean_confidence=None if r[3] is None else round(float(r[3]), 4),
        )
        for r in rows
    ]
