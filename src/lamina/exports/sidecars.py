"""XMP sidecars through exiftool: each image's labels as `XMP-dc:Subject` and Lightroom's
`XMP-lr:HierarchicalSubject`, for Lightroom, darktable and digiKam. Originals are never
opened for writing: exiftool is only ever given sidecar paths.

Where a sidecar goes (beside the original, darktable or Adobe style, or in a mirror
tree) is `lamina.exports.sidecar_paths`; the exiftool process is
`lamina.exports.exiftool_session`.

Two originals whose sidecars would be the same file are both reported as a clash, naming
the other originals, and left alone.

Merging: an existing sidecar keeps all its keywords, ours are appended unless already
there (exact string match, order kept); `replace=True` makes our labels the whole list.
Other tags in an existing sidecar (darktable's history, ratings) are left as they are. A
person's reject / keep marks (`lamina app`) are written only when asked
(`with_decisions`): a rejected image gets `XMP-xmp:Rating` -1 (Lightroom's and
darktable's "rejected"), also when it has no labels (its keywords are then left as they
are); a kept one loses a -1 rating (the tag is removed), other ratings stay. A
new sidecar holds only our two tags (plus exiftool's XMPToolkit): lamina writes an empty
XMP packet to a temporary name next to it, has exiftool fill it in place and renames it
into place.

Safety, all checked by the tests with hostile labels:

* exiftool runs as one `-stay_open` process (pyexiftool), reading one argument per line.
  Each label is one argument ``-XMP-dc:Subject=<label>``: exiftool splits it at the
  first `=` only, so a label that starts with `-`, holds `=`, quotes, `$`, `<`, commas or
  `|` stays one literal list item and never becomes an option or another tag. No `-sep`
  is given, so exiftool never splits a value into several items. Sidecar paths are
  absolute (never starting with `-`) and always input files, never an `-o` pattern (where
  exiftool would expand `%d`, `%f`).
* A label holding a line break (or another control character but tab), a lone surrogate
  or a non-character can neither be one argument line nor XML: it is refused, reported
  per label, and the rest of the image's labels are written. So is a label starting with
  white space, which exiftool strips, and an empty one.
* `HierarchicalSubject` separates levels with `|`: a label holding `|` goes to
  `XMP-dc:Subject` only (reported as a note), so Lightroom does not read it as a
  hierarchy.

Writes go in batches of at most `exiftool_session.BATCH` (256) files: one pipe write with
a command per file (each file has its own values), each ending with an exit-status
marker, so every file gets its own status and error text. Reads (the existing keywords
before, and the verification after) are one `exiftool -j` per batch. After writing, every
sidecar is read back and compared with what was intended; a difference is a per-file
failure. A file that fails (a read-only folder, a path whose folder is a file, a sidecar
that is not XMP, a sidecar name longer than the 255 bytes a file system allows) is
reported with the reason and the others go on.
"""

from __future__ import annotations

import os
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError
from lamina.exports.exiftool_session import HIERARCHY, RATING, SUBJECT, ExifToolSession
from lamina.exports.sidecar_paths import (
    STYLES,
    clash,
    is_utf8,
    mirror_roots,
    path_problem,
    read_only_error,
    sidecar_path,
    write_error,
)

REJECTED = "-1"
USES = ("approved", "over_threshold")
# Why a file of an image with no labels to write gets no sidecar, and what to do about it.
NO_LABELS = {
    "approved": (
        "no approved labels",
        "approve labels with `lamina approve`, or write the tags over the threshold with "
        "--use over-threshold",
    ),
    "over_threshold": (
        "no tag over the threshold",
        "run `lamina tag --labels FILE` (or lower its --threshold)",
    ),
}
EXAMPLES = 3  # example files shown per skip reason
# An XMP packet with nothing in it: what exiftool fills in for a new sidecar.
EMPTY_XMP = (
    "<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
    "<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n"
    "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n"
    "</rdf:RDF>\n"
    "</x:xmpmeta>\n"
    "<?xpacket end='w'?>\n"
)


@dataclass
class SidecarResult:
    """What happened to one sidecar. `action`: created, updated, unchanged, would_create,
    would_update, skipped (nothing to write) or failed (`error` says why). `added`, `kept`
    and `removed` are keywords of `XMP-dc:Subject`; `refused` lists (label, reason) of
    labels not written; `notes` say what else is worth knowing."""

    original: str
    sidecar: str
    action: str = "failed"
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_problem(label: str) -> str | None:
    """Why `label` cannot be written as one literal keyword, or None when it can.

    Example:
        >>> label_problem("-XMP-dc:Creator=evil") is None
        True
        >>> label_problem("two\\nlines")
        'holds a line break or control character (U+000A)'
    """
    if not label:
        return "is empty"
    if label[0].isspace():
        return "starts with white space, which exiftool drops"
    for ch in label:
        category = unicodedata.category(ch)
        if (category == "Cc" and ch != "\t") or ch in "\u2028\u2029":
            return f"holds a line break or control character (U+{ord(ch):04X})"
        if category == "Cs":
            return f"holds a lone surrogate (U+{ord(ch):04X}), not text"
        if ch in "\ufffe\uffff":
            return f"holds the non-character U+{ord(ch):04X}, which XML cannot hold"
    return None


def _clean(labels: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Labels that can be written (duplicates dropped, order kept), and the refused ones."""
    good: dict[str, None] = {}
    refused = []
    for label in labels:
        problem = label_problem(label)
        if problem is None:
            good.setdefault(label, None)
        else:
            refused.append((label, problem))
    return list(good), refused


def _hierarchy(labels: list[str]) -> list[str]:
    return [label for label in labels if "|" not in label]


def _merge(existing: list[str], ours: list[str], replace: bool) -> list[str]:
    if replace:
        return list(ours)
    return existing + [label for label in ours if label not in set(existing)]


def _tag_args(tag: str, values: list[str]) -> list[str]:
    # Several `-TAG=v` in one command make the list exactly [v, ...]; `-TAG=` deletes it.
    return [f"-{tag}={v}" for v in values] or [f"-{tag}="]


@dataclass
class _Plan:
    result: SidecarResult
    path: Path
    exists: bool
    subject: list[str]
    hierarchy: list[str]
    # The rating the sidecar ends with, and whether to write it (None: the tag removed).
    rating: str | None = None
    set_rating: bool = False


def write_sidecars_for(
    items: list[tuple[Path, Path, list[str] | None]],
    *,
    replace: bool = False,
    dry_run: bool = False,
    marks: list[str | None] | None = None,
) -> list[SidecarResult]:
    """Write (original, sidecar, labels) items: one result per item, in order (see the
    module docstring for merging, safety and verification). Labels None: the keywords are
    left as they are. `marks`, one per item: `reject` (rating -1), `keep` (a -1 rating
    removed) or None (the rating left alone). Originals are never given to exiftool; a
    failure is that item's result, never an exception.

    Example:
        >>> item = (Path("/p/cat.jpg"), Path("/p/cat.xmp"), ["cat"])
        >>> [r.action for r in write_sidecars_for([item])]  # doctest: +SKIP
        ['created']
    """
    results: list[SidecarResult] = []
    todo: list[tuple[SidecarResult, Path, list[str] | None, str | None]] = []
    sharing: dict[Path, list[str]] = {}
    for original, sidecar, _ in items:
        sharing.setdefault(Path(os.path.abspath(sidecar)), []).append(str(original))
    for k, (original, sidecar, labels) in enumerate(items):
        sidecar = Path(os.path.abspath(sidecar))
        refused: list[tuple[str, str]] = []
        if labels is not None:
            labels, refused = _clean(list(labels))
        result = SidecarResult(str(original), str(sidecar), refused=refused)
        results.append(result)
        if sidecar == Path(os.path.abspath(original)):
            result.error = "the sidecar path is the original itself"
        elif len(sharing[sidecar]) > 1:
            result.error = clash(Path(original), sharing[sidecar])
        elif "\n" in str(sidecar) or "\r" in str(sidecar):
            result.error = "the sidecar path holds a line break, which exiftool cannot take"
        elif not is_utf8(sidecar):
            result.error = "the sidecar path is not valid UTF-8, which exiftool's JSON cannot name"
        elif (problem := path_problem(Path(original), sidecar)) is not None:
            result.error = problem
        elif sidecar.parent.is_dir() and not os.access(sidecar.parent, os.W_OK):
            result.error = read_only_error(sidecar)
        else:
            todo.append((result, sidecar, labels, marks[k] if marks else None))
    if not todo:
        return results
    with ExifToolSession() as et:
        # Only files: exiftool given a folder would read every file in it.
        existing = et.read([p for _, p, _, _ in todo if p.is_file()])
        plans = []
        for result, sidecar, labels, mark in todo:
            plan = _plan(result, sidecar, labels, existing, replace, dry_run, mark)
            if plan is not None:
                plans.append(plan)
        if not dry_run:
            _write(et, plans)
            _verify(et, [p for p in plans if p.result.action in ("created", "updated")])
    return results


def _plan(
    result: SidecarResult,
    sidecar: Path,
    labels: list[str] | None,
    existing: dict[str, dict[str, Any]],
    replace: bool,
    dry_run: bool,
    mark: str | None = None,
) -> _Plan | None:
    """What to write to one sidecar, with added/kept/removed filled in; None when there is
    nothing to write (the result says why)."""
    if labels is None:  # only a mark to write: the keywords stay as they are
        labels, replace = [], False
    if any("|" in label for label in labels):
        result.notes.append("labels holding '|' are written to XMP-dc:Subject only")
    exists = sidecar.exists()
    old = existing.get(str(sidecar)) if exists else None
    if exists and sidecar.is_dir():
        result.error = "the sidecar path is a folder"
        return None
    if exists and (old is None or old["type"] != "XMP"):
        kind = old["type"] if old else "unreadable"
        result.error = f"an existing file that is not XMP ({kind}) is in the way: left as it is"
        return None
    old_subject = old[SUBJECT] if old else []
    old_hierarchy = old[HIERARCHY] if old else []
    subject = _merge(old_subject, labels, replace)
    hierarchy = _merge(old_hierarchy, _hierarchy(labels), replace)
    result.added = [label for label in subject if label not in old_subject]
    result.kept = [label for label in old_subject if label in subject]
    result.removed = [label for label in old_subject if label not in subject]
    old_rating = old.get(RATING) if old else None
    rating = old_rating
    if mark == "reject":
        rating = REJECTED
    elif mark == "keep" and old_rating == REJECTED:
        rating = None
    if rating != old_rating:
        result.notes.append(
            "rating -1 (rejected)" if rating == REJECTED else "rating -1 removed (kept)"
        )
    if not exists and not subject and rating is None:
        result.action = "skipped"
        result.notes.append("no labels to write")
        return None
    if exists and subject == old_subject and hierarchy == old_hierarchy and rating == old_rating:
        result.action = "unchanged"
        return None
    if dry_run:
        result.action = "would_update" if exists else "would_create"
        return None
    return _Plan(result, sidecar, exists, subject, hierarchy, rating, rating != old_rating)


def _write(et: ExifToolSession, plans: list[_Plan]) -> None:
    """Write every plan: existing sidecars in place, new ones as a temporary file that is
    renamed into place once exiftool has filled it."""
    commands: list[tuple[Path, list[str]]] = []
    ready: list[tuple[_Plan, Path]] = []
    for plan in plans:
        target = plan.path
        if not plan.exists:
            # A short name: the sidecar's own name may already be as long as allowed.
            target = plan.path.with_name(f".lamina-{uuid.uuid4().hex[:12]}.xmp")
            try:
                plan.path.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(EMPTY_XMP, encoding="utf-8")
            except OSError as exc:
                plan.result.error = write_error(plan.path, exc)
                continue
        args = _tag_args(SUBJECT, plan.subject) + _tag_args(HIERARCHY, plan.hierarchy)
        if plan.set_rating:
            args.append(f"-{RATING}={plan.rating or ''}")
        commands.append((target, args))
        ready.append((plan, target))
    for (plan, target), (status, text) in zip(ready, et.write(commands), strict=True):
        if status != 0:
            plan.result.error = f"exiftool: {text or f'exit status {status}'}"
            if target != plan.path:
                target.unlink(missing_ok=True)
            continue
        if target != plan.path:
            try:
                if plan.path.exists():  # appeared meanwhile: never overwrite it
                    raise FileExistsError(f"{plan.path} appeared while writing")
                os.replace(target, plan.path)
            except OSError as exc:
                target.unlink(missing_ok=True)
                plan.result.error = write_error(plan.path, exc)
                continue
        plan.result.action = "updated" if plan.exists else "created"


def _verify(et: ExifToolSession, plans: list[_Plan]) -> None:
    """Read every written sidecar back; a difference from the plan fails that file."""
    found = et.read([p.path for p in plans])
    for plan in plans:
        got = found.get(str(plan.path))
        if got is None:
            plan.result.action = "failed"
            plan.result.error = "written, but exiftool cannot read it back"
            continue
        wanted: list[tuple[str, Any]] = [(SUBJECT, plan.subject), (HIERARCHY, plan.hierarchy)]
        for tag, want in wanted + [(RATING, plan.rating)] * plan.set_rating:
            if got[tag] != want:
                plan.result.action = "failed"
                plan.result.error = f"read back {tag} = {got[tag]!r}, not {want!r}"
                break


# -- from the store ------------------------------------------------------------------------


def _labels_by_image(store: Any, use: str) -> dict[str, list[str]]:
    """image_id -> the labels to write: approved ones, or those over the threshold."""
    if use == "approved":
        from lamina.tagging.approvals import current_approvals

        table = current_approvals(store)
        column = "approved_labels"
    else:
        from lamina.tagging.tags import current_tags

        table = current_tags(store)
        column = "over_threshold"
    ids = table["image_id"].to_pylist()
    values = table[column].to_pylist()
    return {i: list(v) for i, v in zip(ids, values, strict=True) if v is not None and i}


def write_sidecars(
    store: Any,
    *,
    use: str = "approved",
    style: str = "adobe",
    sidecar_dir: str | os.PathLike[str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
    image_ids: list[str] | None = None,
    with_decisions: bool = False,
) -> dict[str, Any]:
    """Write a sidecar for every present file whose image has labels (`use`: "approved"
    labels, or "over_threshold" tags), optionally only `image_ids`; `with_decisions`: also
    each image's reject / keep mark (rating -1 for rejected, also for an image without
    labels; see the module docstring), never by default. Returns counts by
    action, `files`, `problems` (per-file errors and refused labels), `skipped_reasons`
    (why other files got no sidecar: {reason: {files, examples, hint}}, files of images
    with no labels included) and `results` (one dict per file: added / kept / removed
    keywords).

    Example:
        >>> write_sidecars(lamina.open(), style="darktable", dry_run=True)  # doctest: +SKIP
        {'files': 12, 'would_create': 12, 'failed': 0, 'problems': [], ...}
    """
    if use not in USES:
        raise LaminaError(f"unknown label source {use!r}", hint=f"one of: {', '.join(USES)}")
    if style not in STYLES:
        raise LaminaError(f"unknown sidecar style {style!r}", hint=f"one of: {', '.join(STYLES)}")
    if not store.table_files("files"):
        raise LaminaError(
            f"the store {store.root} has no files yet", hint="run `lamina scan SOURCE` first"
        )
    labels: dict[str, list[str] | None] = dict(_labels_by_image(store, use))
    marks: dict[str, str] = {}
    if with_decisions:
        from lamina.tagging.decisions import current_decisions

        current = current_decisions(store).to_pylist()
        marks = {r["image_id"]: r["mark"] for r in current if r["mark"]}
        for image_id in marks:
            labels.setdefault(image_id, None)  # a mark without labels: the rating only
    wanted = set(image_ids or ())
    if image_ids is not None:
        labels = {i: v for i, v in labels.items() if i in wanted}
    files = store.sql(
        "select image_id, source, rel_path from files "
        "where image_id is not null and status <> 'missing' order by source, rel_path"
    ).to_pylist()
    roots = mirror_roots([f["source"] for f in files])
    items: list[tuple[Path, Path, list[str] | None]] = []
    item_marks: list[str | None] = []
    unlabelled: list[str] = []
    for f in files:
        original = Path(f["source"]) / f["rel_path"]
        if f["image_id"] not in labels:
            if image_ids is None or f["image_id"] in wanted:
                unlabelled.append(str(original))
            continue
        rel = f["rel_path"]
        if sidecar_dir is not None and roots[f["source"]]:
            rel = f"{roots[f['source']]}/{rel}"
        sidecar = sidecar_path(original, style=style, sidecar_dir=sidecar_dir, rel_path=rel)
        items.append((original, sidecar, labels[f["image_id"]]))
        item_marks.append(marks.get(f["image_id"]))
    results = write_sidecars_for(items, replace=replace, dry_run=dry_run, marks=item_marks)
    summary = summarise(results)
    if unlabelled:
        reason, hint = NO_LABELS[use]
        summary["skipped_reasons"] = {
            reason: {"files": len(unlabelled), "examples": unlabelled[:EXAMPLES], "hint": hint},
            **summary["skipped_reasons"],
        }
    return summary


def summarise(results: list[SidecarResult]) -> dict[str, Any]:
    """Counts by action, the problems (failed files, refused labels) and every result.

    Example:
        >>> summarise([SidecarResult("/p/a.jpg", "/p/a.xmp", "created", added=["cat"])])["created"]
        1
    """
    actions = (
        "created", "updated", "unchanged", "would_create", "would_update", "skipped", "failed"
    )  # fmt: skip
    out: dict[str, Any] = {"files": len(results), **dict.fromkeys(actions, 0)}
    problems = []
    for r in results:
        if r.error is not None:
            r.action = "failed"
        out[r.action] += 1
        if r.error is not None:
            problems.append({"original": r.original, "sidecar": r.sidecar, "error": r.error})
        for label, reason in r.refused:
            problems.append(
                {"original": r.original, "sidecar": r.sidecar, "label": label, "error": reason}
            )
    out["problems"] = problems
    out["skipped_reasons"] = _skipped_reasons(results)
    out["results"] = [r.as_dict() for r in results]
    return out


def _skipped_reasons(results: list[SidecarResult]) -> dict[str, dict[str, Any]]:
    """Why files got no sidecar although nothing failed: {reason: {files, examples}}."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.action != "skipped":
            continue
        reason = "every label refused" if r.refused else "no labels to write"
        entry = out.setdefault(reason, {"files": 0, "examples": []})
        entry["files"] += 1
        if len(entry["examples"]) < EXAMPLES:
            entry["examples"].append(r.original)
    return out
