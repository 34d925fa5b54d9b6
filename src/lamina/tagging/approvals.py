"""Approved labels, kept apart from the predictions, with their whole history.

Every approval is an event appended to the `approvals` table, one Parquet part per call
(`<store>/tables/approvals/part-<UTC time>-<random>.parquet`, written atomically; parts
are never rewritten): `image_id`, `action`, `labels`, `who`, `at` (UTC), `tag_run_id`
(the tags run the decision was based on, when there were tags) and `note`. An image's
approved labels are the replay of its events in order (`at`, then part, then row):

- `set`: the labels become exactly these;
- `add`: these are added (after the ones already approved);
- `remove`: these are taken away;
- `clear`: none are approved (the image keeps a row with an empty list).

Labels are normalised like a label file's (stripped, lowercased) and, like a label
file's, refused when they hold a control character (so are `who` and `note`: all three
are echoed to terminals). Predictions (the `tags` layer) are never changed by an
approval, and re-tagging never changes approvals.

Example:
    >>> approve(store, ["5d41402abc4b2a76b9719d911017c592"], ["cat"])  # doctest: +SKIP
    1
"""

from __future__ import annotations

import datetime as dt
import getpass
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import LaminaError
from lamina.core.store import atomic_write_parquet
from lamina.tagging.labels import CONTROL_HINT, control_character, normalise_label
from lamina.tagging.tags import current_tags, current_tags_run_id

TABLE = "approvals"
ACTIONS = ("set", "add", "remove", "clear")
EVENT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("action", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("who", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("tag_run_id", pa.string()),
        ("note", pa.string()),
    ]
)
CURRENT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("approved_labels", pa.list_(pa.string())),
        ("approved_by", pa.string()),
        ("approved_at", pa.timestamp("us", tz="UTC")),
        ("tag_run_id", pa.string()),
    ]
)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def _known_ids(store: Any) -> set[str]:
    if not store.table_files("images"):
        return set()
    return set(store.sql("select distinct image_id from images")["image_id"].to_pylist())


def _plain(text: str | None, what: str) -> None:
    """Refuse a control character (an escape sequence, a NUL, a line break) in `text`, as
    label files do: it would reach terminals, CSV and XMP raw."""
    bad = None if text is None else control_character(str(text))
    if bad is not None:
        shown = str(text) if len(str(text)) <= 80 else str(text)[:80] + "…"
        raise LaminaError(f"{what} {shown!r} holds the control character {bad}", hint=CONTROL_HINT)


def _clean(labels: Iterable[str] | None) -> list[str]:
    out: dict[str, None] = {}
    for label in labels or ():
        _plain(label, "the label")
        text = normalise_label(str(label))
        if text:
            out.setdefault(text, None)
    return list(out)


def _write(store: Any, events: list[dict[str, Any]]) -> int:
    if not events:
        return 0
    now = dt.datetime.now(dt.UTC)
    name = f"part-{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.parquet"
    table = pa.Table.from_pylist(events, schema=EVENT_SCHEMA)
    atomic_write_parquet(store.table_dir(TABLE) / name, table)
    return len(events)


def approve(
    store: Any,
    image_ids: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    action: str = "set",
    who: str | None = None,
    note: str | None = None,
) -> int:
    """Record one approval event per image: `set`, `add` or `remove` these labels, or
    `clear` them all. Returns the number of events written. Unknown image ids are
    refused (nothing is written); `who` defaults to the login name.

    Example:
        >>> approve(store, ids, ["cat", "indoor"], who="ana")  # doctest: +SKIP
        2
        >>> approve(store, ids, action="clear")  # doctest: +SKIP
        2
    """
    if action not in ACTIONS:
        raise LaminaError(
            f"unknown approval action {action!r}", hint=f"one of {', '.join(ACTIONS)}"
        )
    clean = _clean(labels)
    _plain(who, "the name of who approves")
    _plain(note, "the note")
    if action == "clear" and clean:
        raise LaminaError("`clear` takes no labels", hint="use `remove` to take some away")
    if action != "clear" and not clean:
        raise LaminaError(
            f"`{action}` needs at least one label",
            hint='give labels (e.g. --labels "cat,indoor"), or clear',
        )
    ids = list(dict.fromkeys(image_ids))
    if not ids:
        return 0
    known = _known_ids(store)
    unknown = [i for i in ids if i not in known]
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        )
        raise LaminaError(
            f"{len(unknown)} unknown image id(s) in the store {store.root}: {shown}",
            hint='list them with `lamina sql "select image_id, rel_path from files"`',
        )
    at = dt.datetime.now(dt.UTC)
    run_id = current_tags_run_id(store)
    user = who or _user()
    events = [
        {
            "image_id": i,
            "action": action,
            "labels": clean,
            "who": user,
            "at": at,
            "tag_run_id": run_id,
            "note": note,
        }
        for i in ids
    ]
    return _write(store, events)


def approve_over_threshold(
    store: Any,
    *,
    image_ids: Sequence[str] | None = None,
    who: str | None = None,
    note: str | None = None,
) -> int:
    """Approve each image's labels over the threshold in the current tags (all tagged
    images, or those of `image_ids`): an `add` event per image, so labels a person
    approved before are kept. Images with no label over the threshold get no event.
    Returns the number of events written.

    Example:
        >>> approve_over_threshold(store, who="ana")  # doctest: +SKIP
        118
    """
    _plain(who, "the name of who approves")
    _plain(note, "the note")
    tags = current_tags(store)
    if image_ids is not None:
        wanted = list(dict.fromkeys(image_ids))
        known = _known_ids(store)
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise LaminaError(
                f"{len(unknown)} unknown image id(s): {', '.join(unknown[:5])}",
                hint='list them with `lamina sql "select image_id, rel_path from files"`',
            )
        tags = tags.filter(pc.is_in(tags["image_id"], value_set=pa.array(wanted, pa.string())))
    at = dt.datetime.now(dt.UTC)
    user = who or _user()
    events = [
        {
            "image_id": image_id,
            "action": "add",
            "labels": list(over),
            "who": user,
            "at": at,
            "tag_run_id": run_id,
            "note": note,
        }
        for image_id, over, run_id in zip(
            tags["image_id"].to_pylist(),
            tags["over_threshold"].to_pylist(),
            tags["run_id"].to_pylist(),
            strict=True,
        )
        if over
    ]
    return _write(store, events)


def _events(store: Any) -> pa.Table:
    """Every event in replay order (time, then part, then row)."""
    folder = Path(store.table_dir(TABLE))
    parts = sorted(p for p in folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not parts:
        return EVENT_SCHEMA.empty_table()
    tables = []
    for n, part in enumerate(parts):
        t = pq.read_table(part, schema=EVENT_SCHEMA)
        tables.append(
            t.append_column("_part", pa.array([n] * t.num_rows, pa.int32())).append_column(
                "_row", pa.array(range(t.num_rows), pa.int32())
            )
        )
    table = pa.concat_tables(tables)
    order = pc.sort_indices(
        table, sort_keys=[("at", "ascending"), ("_part", "ascending"), ("_row", "ascending")]
    )
    return table.take(order).drop_columns(["_part", "_row"])


def approval_history(store: Any, image_id: str | None = None) -> pa.Table:
    """The approval events (of one image, or all), oldest first.

    Example:
        >>> approval_history(store, image_id).to_pylist()[0]["action"]  # doctest: +SKIP
        'set'
    """
    events = _events(store)
    if image_id is not None:
        events = events.filter(pc.equal(events["image_id"], image_id))
    return events


def replay(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each image's state after `events` (approval rows in their order): `labels`, `who`,
    `at`, `tag_run_id` of its last event.

    Example:
        >>> replay([{"image_id": "a", "action": "set", "labels": ["cat"], "who": "ana",
        ...          "at": None, "tag_run_id": None}])["a"]["labels"]
        ['cat']
    """
    state: dict[str, dict[str, Any]] = {}
    for event in events:
        row = state.setdefault(event["image_id"], {"image_id": event["image_id"], "labels": []})
        labels: list[str] = row["labels"]
        action, given = event["action"], event["labels"] or []
        if action == "set":
            labels = list(given)
        elif action == "add":
            labels = labels + [label for label in given if label not in labels]
        elif action == "remove":
            labels = [label for label in labels if label not in given]
        elif action == "clear":
            labels = []
        row.update(labels=labels, who=event["who"], at=event["at"], tag_run_id=event["tag_run_id"])
    return state


def current_approvals(store: Any) -> pa.Table:
    """Each image's approved labels now (the replay of its events), who made the last
    decision, when, and on which tags run. Images never approved have no row; images
    whose approvals were cleared have an empty list.

    Example:
        >>> current_approvals(store).column_names  # doctest: +SKIP
        ['image_id', 'approved_labels', 'approved_by', 'approved_at', 'tag_run_id']
    """
    state = replay(_events(store).to_pylist())
    rows = [
        {
            "image_id": r["image_id"],
            "approved_labels": r["labels"],
            "approved_by": r["who"],
            "approved_at": r["at"],
            "tag_run_id": r["tag_run_id"],
        }
        for r in sorted(state.values(), key=lambda r: r["image_id"])
    ]
    return pa.Table.from_pylist(rows, schema=CURRENT_SCHEMA)
