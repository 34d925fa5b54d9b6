"""The tag export: one row per present file with its size, tags and approved labels, as
CSV (the Photo-Tagger's header, byte for byte), Parquet or JSON.

Columns, in this order (`EXPORT_COLUMNS`):
``path,rel_path,width,height,top1,top1_score,top5_labels,top5_scores,approved_labels,run_id,model_name``

* One row per file present in the manifest that has an `image_id` (status `ok`, and also
  `broken` and `unsupported`: they are files of the collection, and a user who exports
  wants to see them; they simply have no tags). Junk, unreadable and missing files have no
  image id and are left out. Two files with the same bytes are two rows with the same
  tags. Rows are sorted by source, then relative path.
* `path` is the absolute path (`source/rel_path`); `width`/`height` come from `images`
  and are upright: `images` holds the stored (sensor) size read from the header, so for
  an EXIF orientation of 5, 6, 7 or 8 (a quarter turn) the two are swapped (a 640x427
  photo stored as 427x640 and tagged "rotate 90" exports as 640x427). Empty when unknown.
* `top1 … model_name` come from the current tags (`lamina.tagging.tags.current_tags`):
  `top5_labels`/`top5_scores` are the first five of the top-k; `run_id` is the tagging
  run. `approved_labels` comes from `lamina.tagging.approvals.current_approvals`. An image
  with no tags (or no approval) has empty cells.

* Language columns, after those, only when the store has the table behind them (so a
  store without them exports the Photo-Tagger header unchanged): `modality` (`lamina
  modality`), `full_page_text` and `lines` (`lamina ocr`: each line's text, confidence and
  box in original pixels; `lines` is left out of CSV, whose cells hold no records), and
  `caption`, `caption_model` (`lamina caption`, the current captions layer).
* Decision columns, last, only when the store has a `decisions` table (`lamina app`):
  `decision`, the image's current reject / keep mark (empty: none), and `keep`, false
  when the image is rejected or discarded from a duplicate group with no later `keep`
  mark, else true (`lamina.tagging.decisions.COLUMNS_SQL`; the files `--discard-list`
  writes are the rows with `keep` false).

Formats, picked by `fmt` or the file's suffix:

* **CSV** (`.csv`): UTF-8, `\\n` line ends, quoted by Python's `csv` module where needed
  (commas, quotes, newlines in labels). Lists are joined with `|` (`cat|dog`), scores have
  4 decimals. A label that itself holds a `|` cannot be told apart from two labels in a CSV
  cell: the export counts such labels in `warnings` (use Parquet or JSON for them).
* **Parquet** (`.parquet`): real types, lists as `list<string>` / `list<float>`.
* **JSON** (`.json`): one array of objects (records), lists as arrays, scores rounded to 6
  decimals (float32 holds about 7 significant digits; more would be conversion noise).
  **JSON Lines** (`.jsonl`): the same objects, one per line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.csvtext import CsvWriter
from lamina.core.errors import LaminaError
from lamina.core.outputs import staged_output
from lamina.tagging.decisions import COLUMNS_SQL

EXPORT_COLUMNS = (
    "path",
    "rel_path",
    "width",
    "height",
    "top1",
    "top1_score",
    "top5_labels",
    "top5_scores",
    "approved_labels",
    "run_id",
    "model_name",
)
EXPORT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("rel_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("top1", pa.string()),
        ("top1_score", pa.float32()),
        ("top5_labels", pa.list_(pa.string())),
        ("top5_scores", pa.list_(pa.float32())),
        ("approved_labels", pa.list_(pa.string())),
        ("run_id", pa.string()),
        ("model_name", pa.string()),
    ]
)
# What the export reads from the tagging tables (helper modules lamina.tagging.*).
TAGS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model_name", pa.string()),
        ("top1", pa.string()),
        ("top1_score", pa.float32()),
        ("top_labels", pa.list_(pa.string())),
        ("top_scores", pa.list_(pa.float32())),
        ("run_id", pa.string()),
    ]
)
APPROVALS_SCHEMA = pa.schema(
    [("image_id", pa.string()), ("approved_labels", pa.list_(pa.string()))]
)
FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "jsonl"}
CSV_DECIMALS = 4
JSON_DECIMALS = 6
LIST_SEP = "|"
TOP = 5

# Language columns: table -> (columns selected, join). Fixed text, never user input.
LANGUAGE_COLUMNS = {
    "modality": (("modality",), "lm.modality", "left join modality lm using (image_id)"),
    "ocr": (
        ("full_page_text", "lines"),
        "lo.text as full_page_text, lo.lines",
        "left join ocr lo using (image_id)",
    ),
    "captions": (
        ("caption", "caption_model"),
        "lc.caption, lc.model as caption_model",
        "left join captions lc using (image_id)",
    ),
}
NOT_IN_CSV = ("lines",)
# Decision columns, last, only when the store has a `decisions` table (`lamina app`).
DECISION_COLUMNS = ("decision", "keep")

_EXPORT_SQL = """
select file_path(f.source, f.rel_path) as path, f.rel_path, {width} as width, {height} as height,
       t.top1, t.top1_score, t.top_labels[1:{top}] as top5_labels,
       t.top_scores[1:{top}] as top5_scores, a.approved_labels, t.run_id, t.model_name
       {language_select}{decision_select}
from files f
left join images i using (image_id)
left join export_tags t using (image_id)
left join export_approvals a using (image_id)
{language_joins}
{decision_join}
where f.image_id is not null and f.status <> 'missing'
order by f.source, f.rel_path
"""


def _conform(table: pa.Table | None, schema: pa.Schema, what: str) -> pa.Table:
    """`table` reduced to `schema`'s columns (an empty one when None), or a clear error."""
    if table is None:
        return schema.empty_table()
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise LaminaError(
            f"the {what} table lacks the column(s) {', '.join(missing)}",
            hint=f"it needs: {', '.join(schema.names)}",
        )
    return table.select(schema.names).cast(schema)


def export_table(store: Any, *, tags: pa.Table | None, approvals: pa.Table | None) -> pa.Table:
    """The export rows (`EXPORT_SCHEMA`) of the store's present files joined with `tags`
    (columns as `current_tags`) and `approvals` (as `current_approvals`); None: no tags
    or no approvals, so those cells are empty. Reads only `files` and `images`.

    Example:
        >>> t = export_table(lamina.open(), tags=None, approvals=None)  # doctest: +SKIP
        >>> t.column_names[:4]  # doctest: +SKIP
        ['path', 'rel_path', 'width', 'height']
    """
    if not store.table_files("files") or not store.table_files("images"):
        raise LaminaError(
            f"the store {store.root} has no scanned files yet",
            hint="run `lamina scan SOURCE` first",
        )
    tags = _conform(tags, TAGS_SCHEMA, "tags")
    approvals = _conform(approvals, APPROVALS_SCHEMA, "approvals")
    for name, table in (("tags", tags), ("approvals", approvals)):
        # One row per image, or the join would repeat files.
        ids = table["image_id"]
        if len(pc.unique(ids)) != len(ids):
            counts = pc.value_counts(ids).to_pylist()
            twice = next(c["values"] for c in counts if c["counts"] > 1)
            raise LaminaError(
                f"the {name} table has several rows for the image {twice}",
                hint="export one model's tags (one row per image)",
            )
    con = store.connect()
    con.register("export_tags", tags)
    con.register("export_approvals", approvals)
    width, height = _upright_size(con)
    have = set(store.available_tables())
    language = [v for k, v in LANGUAGE_COLUMNS.items() if k in have]
    sql = _EXPORT_SQL.format(
        top=TOP,
        width=width,
        height=height,
        language_select="".join(f", {select}" for _, select, _ in language),
        language_joins="\n".join(join for _, _, join in language),
        decision_select=", ld.decision, ld.keep" if "decisions" in have else "",
        decision_join=f"left join ({COLUMNS_SQL}) ld using (image_id)"
        if "decisions" in have
        else "",
    )
    out = con.sql(sql).to_arrow_table()
    extra = [name for names, _, _ in language for name in names]
    extra += list(DECISION_COLUMNS) if "decisions" in have else []
    schema = EXPORT_SCHEMA
    for name in extra:
        schema = schema.append(out.schema.field(name))
    return out.select([*EXPORT_COLUMNS, *extra]).cast(schema)


# EXIF orientations that turn the image a quarter turn: its upright size is the stored
# size with width and height swapped.
QUARTER_TURNS = (5, 6, 7, 8)


def _upright_size(con: Any) -> tuple[str, str]:
    """SQL for the upright width and height of `images` (alias `i`): swapped for the
    quarter-turn orientations; as stored when the table has no orientation column."""
    columns = {r[0] for r in con.execute("describe images").fetchall()}
    if "orientation" not in columns:
        return "i.width", "i.height"
    turned = f"coalesce(i.orientation, 1) in ({', '.join(map(str, QUARTER_TURNS))})"
    return (
        f"case when {turned} then i.height else i.width end",
        f"case when {turned} then i.width else i.height end",
    )


def format_for(out_path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The export format: `fmt` when given, else from the file's suffix.

    Example:
        >>> format_for("tags.parquet"), format_for("x.txt", "csv")
        ('parquet', 'csv')
    """
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise LaminaError(
                f"unknown export format {fmt!r}", hint=f"one of: {', '.join(FORMATS.values())}"
            )
        return fmt
    suffix = Path(out_path).suffix.lower()
    if suffix not in FORMATS:
        raise LaminaError(
            f"cannot tell the export format of {out_path} from its suffix",
            hint=f"name it {' / '.join('*' + s for s in FORMATS)}, or give the format",
        )
    return FORMATS[suffix]


def _score(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def csv_row(row: dict[str, Any]) -> list[str]:
    """One export row as CSV cells: lists joined with `|`, scores with 4 decimals, None
    as an empty cell.

    Example:
        >>> csv_row({"path": "/p/a.jpg", "rel_path": "a.jpg", "width": 640, "height": 480,
        ...          "top1": "cat", "top1_score": 0.91234, "top5_labels": ["cat", "dog"],
        ...          "top5_scores": [0.91234, 0.1], "approved_labels": None,
        ...          "run_id": "r1", "model_name": "m"})[4:8]
        ['cat', '0.9123', 'cat|dog', '0.9123|0.1000']
    """
    cells = []
    for name in [*EXPORT_COLUMNS, *(n for n in row if n not in EXPORT_COLUMNS)]:
        value = row.get(name)
        if value is None:
            cells.append("")
        elif name.endswith("_scores"):
            cells.append(LIST_SEP.join(_score(v, CSV_DECIMALS) for v in value))
        elif name.endswith("_labels"):
            cells.append(LIST_SEP.join(value))
        elif name.endswith("_score"):
            cells.append(_score(value, CSV_DECIMALS))
        else:
            cells.append(str(value))
    return cells


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("top1_score", "top5_scores"):
        value = out[name]
        if isinstance(value, list):
            out[name] = [None if v is None else round(v, JSON_DECIMALS) for v in value]
        elif value is not None:
            out[name] = round(value, JSON_DECIMALS)
    return out


def write_table(table: pa.Table, out_path: str | os.PathLike[str], fmt: str) -> None:
    """Write export rows to `out_path` in `fmt` (csv, parquet, json, jsonl), atomically
    (a temporary file renamed into place)."""
    out = Path(out_path)
    with staged_output(out, hint="choose another -o path") as tmp:
        if fmt == "parquet":
            pq.write_table(table, tmp, compression="zstd")
        elif fmt == "csv":
            table = table.drop_columns([n for n in NOT_IN_CSV if n in table.column_names])
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = CsvWriter(fh)  # keeps a "\r" of a file name inside its cell
                writer.writerow(table.column_names)
                writer.writerows(csv_row(r) for r in table.to_pylist())
        else:
            rows = [_json_row(r) for r in table.to_pylist()]
            with open(tmp, "w", encoding="utf-8") as fh:
                if fmt == "json":
                    json.dump(rows, fh, ensure_ascii=False, indent=1)
                    fh.write("\n")
                else:
                    for r in rows:
                        fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _current(store: Any) -> tuple[pa.Table | None, pa.Table | None, list[str]]:
    """The store's current tags and approvals (None where there are none yet)."""
    from lamina.tagging.approvals import current_approvals
    from lamina.tagging.tags import current_tags

    warnings = []
    tags: pa.Table | None
    approvals: pa.Table | None
    try:
        tags = current_tags(store)
    except LaminaError as exc:
        tags = None
        warnings.append(f"no tags: {exc.message}")
    try:
        approvals = current_approvals(store)
    except LaminaError:
        approvals = None
    if tags is not None and tags.num_rows == 0:
        tags = None
    if tags is None and not warnings:
        warnings.append("no tags yet: the tag columns are empty (run `lamina tag` first)")
    return tags, approvals, warnings


def export(
    store: Any,
    out_path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    tags: pa.Table | None = None,
    approvals: pa.Table | None = None,
    force: bool = False,
    force_into_source: bool = False,
    fix: str | None = None,
) -> dict[str, Any]:
    """Export every present file with its tags and approved labels to `out_path` (format
    from `fmt` or the suffix: .csv, .parquet, .json, .jsonl). `tags` / `approvals`: tables
    to use instead of the store's (when neither is given, the current tags and approvals
    are read; a missing table means empty cells). Returns `path`, `format`, `rows`,
    `tagged` and `approved` (rows with tags / with at least one approved label), and
    `warnings`. `out_path` is checked first (`lamina.core.outputs.check_output_path`,
    with `force`, `force_into_source` and `fix`, the hint for an existing file).

    Example:
        >>> export(lamina.open(), "tags.csv")  # doctest: +SKIP
        {'path': 'tags.csv', 'format': 'csv', 'rows': 312, 'tagged': 309, ...}
    """
    from lamina.core.outputs import FORCE_HINT, check_output_path, record_output

    fmt = format_for(out_path, fmt)
    out = check_output_path(
        store, out_path, force=force, force_into_source=force_into_source, fix=fix or FORCE_HINT
    )
    warnings: list[str] = []
    if tags is None and approvals is None:
        tags, approvals, warnings = _current(store)
    table = export_table(store, tags=tags, approvals=approvals)
    if fmt == "csv":
        piped = {
            label
            for column in ("top5_labels", "approved_labels")
            for labels in table[column].to_pylist()
            for label in labels or ()
            if LIST_SEP in label
        }
        if piped:
            warnings.append(
                f"{len(piped)} label(s) hold a '|', the CSV list separator "
                f"(e.g. {sorted(piped)[0]!r}): use .parquet or .json to keep them apart"
            )
    write_table(table, out, fmt)
    record_output(store, out)
    return {
        "path": str(out_path),
        "format": fmt,
        "rows": table.num_rows,
        "tagged": table.num_rows - table["top1"].null_count,
        "approved": sum(1 for v in table["approved_labels"].to_pylist() if v),
        "warnings": warnings,
    }
