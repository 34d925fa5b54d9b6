"""A person's decisions about images, kept apart from what lamina computed, append-only.

Every decision is an event in the `decisions` table, one Parquet part per call
(`<store>/tables/decisions/part-<UTC time>-<random>.parquet`, written atomically; parts are
never rewritten, so two writers at once never lose an event): `image_id`, `kind`,
`decision`, `group_id` (the duplicate group a duplicate decision was about), `who`, `at`
(UTC) and `note`. Two kinds:

- `mark`: `reject` (the person does not want the image) or `keep`;
- `duplicate`: `keep` (the copy to keep), `discard` (a copy that may go) or
  `not_duplicate` (the group is wrong about this image).

An image's current decision of a kind is its latest event of that kind (`at`, then part,
then row). Nothing is ever deleted or moved: `discard_paths` lists the files a person
chose to drop (`lamina export --discard-list FILE`), and what happens to them is up to the
person.

Example:
    >>> decide(store, ["5d41402abc4b2a76b9719d911017c592"], "reject", who="ana")  # doctest: +SKIP
    1
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.store import atomic_write_parquet
from lamina.tagging.approvals import _known_ids, _plain, _user

TABLE = "decisions"
# decision -> kind: each decision belongs to one kind, so a caller names only the decision.
DECISIONS = {
    "reject": "mark",
    "keep": "mark",
    "dup_keep": "duplicate",
    "discard": "duplicate",
    "not_duplicate": "duplicate",
}
# Stored names: a duplicate `keep` is stored as `keep` under kind `duplicate`.
STORED = {"dup_keep": "keep"}
EVENT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("kind", pa.string()),
        ("decision", pa.string()),
        ("group_id", pa.string()),
        ("who", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("note", pa.string()),
    ]
)

# The current decision of each kind per image: its latest event of that kind. `source`
# has the events and a `part` column (the part file's name), which breaks ties of `at`.
CURRENT_SQL = """
select image_id,
       max_by(decision, row("at", part)) filter (where kind = 'mark') as mark,
       max_by(decision, row("at", part)) filter (where kind = 'duplicate') as duplicate_decision,
       max_by(who, row("at", part)) as decided_by,
       max("at") as decided_at,
       max(row("at", part)) filter (where kind = 'mark') as mark_at,
       max(row("at", part)) filter (where kind = 'duplicate') as duplicate_at
from {source}
group by image_id
"""
# Whether a current-decisions row (`CURRENT_SQL`'s columns) keeps its image: not when its
# mark is `reject`, nor when its duplicate decision is `discard` and no `keep` mark came
# after that discard. An image without decisions is kept (callers coalesce to true).
KEEP_EXPR = (
    "not (coalesce(mark = 'reject', false) or (coalesce(duplicate_decision = 'discard', false) "
    "and not coalesce(mark = 'keep' and mark_at > duplicate_at, false)))"
)
# `decision` (the current reject / keep mark) and `keep` of every image with an id in
# `files`, over the store's `decisions` view: what `lamina export`, `--where` and
# `--columns` see. Fixed text, never user input. `NO_DECISIONS_SQL`: the same columns for
# a store nobody has decided in yet (no mark, every image kept).
NO_DECISIONS_SQL = (
    "select distinct image_id, null::varchar as decision, true as keep "
    "from files where image_id is not null"
)
COLUMNS_SQL = (
    "select f.image_id, d.mark as decision, coalesce(d.keep, true) as keep "
    "from (select distinct image_id from files where image_id is not null) f "
    "left join (select image_id, mark, {keep} as keep from ("
    + CURRENT_SQL.format(source="(select *, '' as part from decisions)")
    + ")) d using (image_id)"
).format(keep=KEEP_EXPR)


def decide(
    store: Any,
    image_ids: Sequence[str],
    decision: str,
    *,
    group_id: str | None = None,
    who: str | None = None,
    note: str | None = None,
) -> int:
    """Record `decision` for each image (one event each); returns the number written.
    `decision`: `reject` / `keep` (marks) or `dup_keep` / `discard` / `not_duplicate`
    (about the duplicate group `group_id`). Unknown image ids are refused, nothing
    written; `who` defaults to the login name.

    Example:
        >>> decide(store, ids, "discard", group_id=ids[0], who="ana")  # doctest: +SKIP
        2
    """
    if decision not in DECISIONS:
        raise LaminaError(f"unknown decision {decision!r}", hint=f"one of {', '.join(DECISIONS)}")
    _plain(who, "the name of who decides")
    _plain(note, "the note")
    _plain(group_id, "the group id")
    ids = list(dict.fromkeys(image_ids))
    if not ids:
        return 0
    known = _known_ids(store)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise LaminaError(
            f"{len(unknown)} unknown image id(s) in the store {store.root}: "
            + ", ".join(unknown[:5]),
            hint='list them with `lamina sql "select image_id, rel_path from files"`',
        )
    at = dt.datetime.now(dt.UTC)
    kind = DECISIONS[decision]
    stored = STORED.get(decision, decision)
    user = who or _user()
    events = [
        {
            "image_id": i,
            "kind": kind,
            "decision": stored,
            "group_id": group_id if kind == "duplicate" else None,
            "who": user,
            "at": at,
            "note": note,
        }
        for i in ids
    ]
    name = f"part-{at.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.parquet"
    atomic_write_parquet(
        store.table_dir(TABLE) / name, pa.Table.from_pylist(events, schema=EVENT_SCHEMA)
    )
    return len(events)


def current_sql(store: Any) -> str | None:
    """The SELECT of each image's current decisions (`image_id`, `mark`,
    `duplicate_decision`, `decided_by`, `decided_at`), or None when there are none."""
    files = store.table_files(TABLE)
    if not files:
        return None
    listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return CURRENT_SQL.format(
        source=f"(select *, filename as part from read_parquet([{listing}], filename = true))"
    )


def current_decisions(store: Any) -> pa.Table:
    """Each decided image's current mark and duplicate decision.

    Example:
        >>> current_decisions(store).column_names  # doctest: +SKIP
        ['image_id', 'mark', 'duplicate_decision', 'decided_by', 'decided_at']
    """
    import duckdb

    query = current_sql(store)
    if query is None:
        return pa.table(
            {
                "image_id": pa.array([], pa.string()),
                "mark": pa.array([], pa.string()),
                "duplicate_decision": pa.array([], pa.string()),
                "decided_by": pa.array([], pa.string()),
                "decided_at": pa.array([], pa.timestamp("us", tz="UTC")),
            }
        )
    shown = "image_id, mark, duplicate_decision, decided_by, decided_at"
    return duckdb.connect().sql(f"select {shown} from ({query}) order by image_id").to_arrow_table()


def discard_paths(store: Any) -> list[str]:
    """Absolute paths of the present files of every image whose current mark is `reject`
    or whose current duplicate decision is `discard` with no `keep` mark after it (a
    person who marks a discarded copy `keep` changed their mind; a discard after a `keep`
    mark is the newer word), sorted: the images whose `keep` column is false.

    Example:
        >>> discard_paths(store)  # doctest: +SKIP
        ['/photos/cats/a_copy.jpg']
    """
    query = current_sql(store)
    if query is None or not store.table_files("files"):
        return []
    rows = (
        store.connect()
        .execute(
            f"with d as ({query}) "
            "select distinct file_path(f.source, f.rel_path) as path "
            "from files f join d using (image_id) "
            f"where f.status <> 'missing' and not ({KEEP_EXPR}) order by path"
        )
        .fetchall()
    )
    return [r[0] for r in rows]
