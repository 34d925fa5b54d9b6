"""`lamina select`: the paths (or image ids) of the files a SQL condition selects, written
to a file or returned to print."""

from __future__ import annotations

from dataclasses import dataclass, field

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


@dataclass(frozen=True)
class SelectConfig:
    """What `lamina select` takes: `where`, one SQL expression over the columns of files,
    flags, signals, duplicates, modality, predictions (as pred_label, pred_score, ...) and
    decisions (`decision`, `keep`);
    `output`, a file to write the list to (None: only return it; checked as any output,
    `force` / `force_into_source` as `lamina.core.outputs.check_output_path` takes them);
    one path per image, or image ids (one each) instead of paths."""

    where: str
    output: str | None = None
    one_per_image: bool = False
    ids: bool = False
    force: bool = False
    force_into_source: bool = False


@dataclass
class SelectResult:
    """The selected paths (or ids), in source and path order, and the file written (None
    when `output` was not given)."""

    lines: list[str] = field(default_factory=list)
    output: str | None = None

    @property
    def text(self) -> str:
        """The list as written: one line each."""
        return "".join(f"{line}\n" for line in self.lines)


def select(store: Store, config: SelectConfig) -> SelectResult:
    """Select present files by a SQL condition, run on a connection that reads only the
    store (`lamina.core.sqlsafe.check_condition` checks it first); write the list to
    `config.output` if given.

    Example:
        >>> lamina.select(lamina.open(), SelectConfig("blurry or dark")).lines  # doctest: +SKIP
        ['/photos/a.jpg', '/photos/b.jpg']
    """
    import duckdb

    from lamina.core.outputs import check_output_path, write_output
    from lamina.core.sqlsafe import check_condition

    output, force, into = config.output, config.force, config.force_into_source
    tables = store.available_tables()
    condition = check_condition(
        config.where, tables=[*tables, "folder_labels"], what="--where condition"
    )
    if output:
        check_output_path(store, output, force=force, force_into_source=into)
    joins = "".join(
        f" left join {t} using (image_id)"
        for t in ("flags", "signals", "duplicates", "modality")
        if t in tables
    )
    from lamina.learning.predict import where_join

    joins += where_join(tables)
    from lamina.jobs.approve import where_source

    # `decision` and `keep`, as `lamina approve --where` sees them (also before any decision)
    joins += f" left join {where_source('decisions', tables)} using (image_id)"
    query = (
        f"select image_id, source || '/' || rel_path as path from files{joins} "
        f"where status <> 'missing' and (\n{condition}\n) order by source, rel_path"
    )
    try:
        rows = store.connect(sandbox=True).execute(query).fetchall()
    except duckdb.Error as exc:
        raise LaminaError(f"bad --where condition: {str(exc).splitlines()[0]}") from None
    seen: set[str] = set()
    lines = []
    for image_id, path in rows:
        if config.one_per_image or config.ids:
            if image_id is None or image_id in seen:
                continue
            seen.add(image_id)
        lines.append(image_id if config.ids else path)
    result = SelectResult(lines, output or None)
    if output:
        write_output(store, output, result.text, force=force, force_into_source=into)
    return result
