"""Global passes: a pass that computes its whole layer at once from the store (flags,
clusters, ...), run again only when its inputs or config changed since it last ran.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

from lamina.core.chunk_work import write_files
from lamina.core.ledger import Run, utc_now
from lamina.core.passes import Pass, split_output
from lamina.core.store import Store, atomic_write_json, atomic_write_parquet


def input_fingerprint(store: Store, names: Iterable[str], paths: Iterable[Path] = ()) -> str:
    """A hash of the files that make up the tables `names`, and of `paths` (files a pass
    reads beyond the current layers, see `Pass.input_paths`): changes when any input does."""
    digest = hashlib.sha256()
    groups = [(f"[{name}]", store.table_files(name)) for name in sorted(names)]
    extra = sorted(paths)
    if extra:
        groups.append(("[paths]", extra))
    for label, files in groups:
        digest.update(label.encode())
        content = store.table_dir("files") / "files.digest"
        if label == "[files]" and content.is_file():
            # The scan's digest of the rows that hold an image, not the file's mtime:
            # every rescan rewrites files.parquet, but only a change to the images' files
            # should make a pass recompute (see lamina.manifest.commit).
            digest.update(content.read_bytes().split(b"\n")[0])
            continue
        for path in files:
            st = path.stat()
            digest.update(
                f"{path.relative_to(store.root)} {st.st_size} {st.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()[:16]


def run_global_pass(store: Store, instance: Pass, run: Run, *, force: bool = False) -> dict:
    """Run a global pass unless its inputs and config are unchanged since it last ran.

    Its layer holds one part (`Store.global_part`), replaced atomically; the ledger record
    (`Store.global_record`) names the input fingerprint it was computed from. Either way
    its layer becomes the pass's current one (`Store.set_current`).
    """
    if instance.kind != "global":
        raise TypeError(f"{instance.name} is not a global pass")
    fingerprint = input_fingerprint(store, instance.reads, instance.input_paths(store))
    record_path = store.global_record(instance.name, instance.layer_id)
    part = store.global_part(instance.name, instance.layer_id)
    if not force and record_path.exists() and part.exists():
        record = json.loads(record_path.read_text())
        if record.get("inputs") == fingerprint:
            if store.current_pointer(instance.name) != instance.layer_id:
                # Back to a config computed before (a policy tried, then the default
                # again): make its layer the current one, which is what `sql` shows.
                store.set_current(instance.name, instance.layer_id, run.run_id)
            return {"skipped": True, "rows": record["rows"], "layer": instance.layer_id}
    t0 = time.monotonic()
    out, files = split_output(instance.compute(store))
    out = out.select(instance.schema.names).cast(instance.schema)
    write_files(store.root, instance, files)
    atomic_write_parquet(part, out)
    seconds = round(time.monotonic() - t0, 3)
    atomic_write_json(
        record_path,
        {
            "pass": instance.name,
            "layer": instance.layer_id,
            "config": instance.config_dict(),
            "inputs": fingerprint,
            "rows": out.num_rows,
            "run_id": run.run_id,
            "seconds": seconds,
            "finished": utc_now(),
        },
    )
    store.set_current(instance.name, instance.layer_id, run.run_id)
    return {"skipped": False, "rows": out.num_rows, "layer": instance.layer_id, "seconds": seconds}
