"""What the review app's image view shows of one image (`image`): its files, facts,
signals, flags with the policy's reasons, duplicate group side by side
(`groups_members`, also the duplicate groups page's members), cluster, tags, approval and
decision history, nearest neighbours and what the language passes say (`language`).

Example:
    >>> image(store, image_id, Views(store).reader())["flags"]  # doctest: +SKIP
    [{'flag': 'dark', 'score': 0.93, 'threshold': 0.9, 'why': '...'}]
"""

from __future__ import annotations

from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.review.reader import Reader, known_image, on_disk

# Formats a browser shows: their originals are the large preview, others show the thumbnail.
BROWSER_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}


def image(store: Store, image_id: str, reader: Reader | None = None) -> dict[str, Any] | None:
    """Everything the image view shows: its files, image facts, signals, flags with the
    policy's reasons, duplicate group, cluster, tags, approval and decision history,
    nearest neighbours (when a vector index is already built), and its modality, OCR text
    and captions (`language`). None for an unknown id.

    Example:
        >>> image(store, "5d41402abc4b2a76b9719d911017c592")["flags"]  # doctest: +SKIP
        [{'flag': 'dark', 'score': 0.93, 'why': '...'}]
    """
    r = reader or Reader(store)
    if not known_image(r, image_id):
        return None
    out: dict[str, Any] = {"image_id": image_id}
    files = r.all(
        "select source, rel_path, folder, name, status, reason, size, mtime, "
        "file_path(source, rel_path) as path from files where image_id = ? "
        "order by source, rel_path",
        [image_id],
    )
    for f in files:
        f["on_disk"] = f["status"] != "missing" and on_disk(f["path"])
    out["files"] = files
    out["facts"] = (
        r.one("select * exclude (image_id) from images where image_id = ?", [image_id]) or {}
    )
    out["signals"] = {}
    if r.has("signals"):
        row = (
            r.one(
                "select * exclude (image_id, hist_rgb, hist_lab) from signals where image_id = ?",
                [image_id],
            )
            if "hist_rgb" in _columns(r, "signals")
            else r.one("select * exclude (image_id) from signals where image_id = ?", [image_id])
        )
        out["signals"] = row or {}
    out["flags"] = []
    if r.has("flags"):
        from lamina.analysis.flags import FLAG_NAMES, current_policy

        row = r.one("select * from flags where image_id = ?", [image_id])
        if row:
            policy, _ = current_policy(store)
            for name in FLAG_NAMES:
                if row.get(name):
                    rule = policy.rules.get(name)
                    out["flags"].append(
                        {
                            "flag": name,
                            "score": row.get(f"{name}_score"),
                            "threshold": rule.threshold if rule else None,
                            "why": rule.why if rule else "",
                        }
                    )
    out["duplicates"] = []
    if r.has("duplicates"):
        out["duplicates"] = group_members(r, image_id)
    out["cluster"] = None
    if r.has("clusters"):
        out["cluster"] = r.one(
            "select cluster, cluster_size, distance, is_medoid from clusters where image_id = ?",
            [image_id],
        )
    out["tags"] = None
    if r.has("tags"):
        out["tags"] = r.one(
            "select top1, top_labels, top_scores, over_threshold from tags where image_id = ?",
            [image_id],
        )
    out["approvals"] = []
    out["approved"] = []
    if r.has("approvals"):
        from lamina.tagging.approvals import replay

        events = r.all(
            'select action, labels, who, "at", tag_run_id, note, image_id from approvals '
            'where image_id = ? order by "at"',
            [image_id],
        )
        out["approvals"] = events
        state = replay(events).get(image_id)
        out["approved"] = state["labels"] if state else []
    out["decisions"] = []
    if r.has("decisions"):
        out["decisions"] = r.all(
            'select kind, decision, group_id, who, "at", note from decisions '
            'where image_id = ? order by "at"',
            [image_id],
        )
    out["neighbours"] = neighbours(store, r, image_id)
    out.update(language(r, image_id))
    return out


def language(r: Reader, image_id: str) -> dict[str, Any]:
    """What language passes say of one image: `modality` (kind, score, reason), `ocr`
    (engine, text, mean confidence, lines with their boxes in original pixels; the row
    without error) and `captions` (every caption row, newest first), each None / [] when
    the store has no such table or no row for the image.

    Example:
        >>> language(Reader(store), image_id)["ocr"]["text"]  # doctest: +SKIP
        'Herbarium of Uppsala'
    """
    out: dict[str, Any] = {"modality": None, "ocr": None, "captions": []}
    if r.has("modality"):
        out["modality"] = r.one(
            "select modality, modality_score, modality_reason from modality where image_id = ?",
            [image_id],
        )
    if r.has("ocr"):
        out["ocr"] = r.one(
            "select engine, text, mean_confidence, lines from ocr "
            "where image_id = ? and error is null",
            [image_id],
        )
    if r.has("captions"):
        out["captions"] = r.all(
            "select caption, model, prompt, prompt_version, created from captions "
            "where image_id = ? and error is null order by created desc",
            [image_id],
        )
    return out


def _columns(r: Reader, table: str) -> set[str]:
    return {row["column_name"] for row in r.all(f'describe "{table}"')}


def group_members(r: Reader, image_id: str) -> list[dict[str, Any]]:
    """The members of `image_id`'s duplicate group (none when it is in no group)."""
    row = r.one("select group_id, group_size from duplicates where image_id = ?", [image_id])
    if not row or not row["group_id"] or (row["group_size"] or 0) <= 1:
        return []
    return groups_members(r, [row["group_id"]]).get(row["group_id"], [])


def groups_members(r: Reader, group_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Members of these duplicate groups, side by side facts: resolution, size, format,
    EXIF date, kind, distance, the kept one and why, the current duplicate decision."""
    if not group_ids:
        return {}
    decisions = r.decisions_sql()
    dj = f"left join ({decisions}) dc on dc.image_id = d.image_id" if decisions else ""
    dcol = (
        "dc.duplicate_decision, dc.mark"
        if decisions
        else "null as duplicate_decision, null as mark"
    )
    rows = r.all(
        "select d.group_id, d.image_id, d.kind, d.distance, d.is_representative, d.keep_reason, "
        "i.width, i.height, i.format, i.size, i.datetime_original, "
        "(select min(file_path(source, rel_path)) from files f where f.image_id = d.image_id "
        " and f.status <> 'missing') as path, "
        "(select min(rel_path) from files f where f.image_id = d.image_id "
        f" and f.status <> 'missing') as rel_path, {dcol} "
        f"from duplicates d left join images i on i.image_id = d.image_id {dj} "
        "where d.group_id in (select unnest(?::varchar[])) "
        "order by d.group_id, d.is_representative desc, d.image_id",
        [group_ids],
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["on_disk"] = on_disk(row["path"])
        out.setdefault(row["group_id"], []).append(row)
    return out


def neighbours(store: Store, r: Reader, image_id: str, k: int = 12) -> list[dict[str, Any]]:
    """The `k` nearest images by the newest embedding model, when its vector index is
    already built (`lamina similar` builds it): the app never builds one in a request."""
    if not r.has("embed"):
        return []
    try:
        from lamina.index.vectors import built_index

        index = built_index(store)
    except (LaminaError, OSError, ImportError):
        return []
    if index is None:
        return []
    vector = index.vector(image_id)
    if vector is None:
        return []
    scores, rows = index.search(vector, k + 1)
    out = []
    for score, row in zip(scores[0].tolist(), rows[0].tolist(), strict=True):
        if row < 0:
            continue
        other = index.ids[row].as_py()
        if other != image_id:
            out.append({"image_id": other, "similarity": float(score)})
    return out[:k]
