from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.core import decode_failures
from lamina.core.runner import run_passes
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.manifest.status import store_status
from tests.conftest import write_photo
from tests.manifest import files_of, scanned


def write_corrupt_png(path: Path, seed: int) -> Path:
    """A PNG whose header and chunks parse but whose compressed pixels do not decode."""
    pixels = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    data = buf.getvalue()
    at = data.index(b"IDAT") + 40
    noise = np.random.default_rng(seed + 1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:at] + noise + data[at + 2000 :])
    return path


def sense(store: Store, passes: list | None = None) -> dict:
    """run_passes, with what it recorded about decode failures (the run record's counts)."""
    result = run_passes(
        store, passes or [("signals", None), ("hashes", None)], workers=1, progress=False
    )
    record = json.loads((store.run_dir(result["run_id"]) / "run.json").read_text())
    return {**result, "undecodable": record["counts"]["undecodable"]}


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_photo(src / "a.jpg", 1)
    write_photo(src / "b.png", 2, fmt="PNG")
    write_corrupt_png(src / "bad" / "c.png", 3)
    (src / "bad" / "cut.jpg").write_bytes((src / "a.jpg").read_bytes()[:300])  # truncated
    return src


def test_an_undecodable_image_is_broken_in_every_count(collection: Path, tmp_path: Path) -> None:
    from lamina.jobs.sense import sensed_line
    from lamina.report.context import open_context
    from lamina.report.data import overview

    store = scanned(tmp_path, collection)
    assert files_of(store)["bad/c.png"]["status"] == "ok"  # the header parses
    result = sense(store)
    assert result["undecodable"] == {"failed": 1, "cleared": 0, "undecodable": 1}
    c = files_of(store)["bad/c.png"]
    assert (c["status"], c["reason"]) == ("broken", "undecodable")
    assert "data stream" in c["detail"]  # the decoder's message
    image = store.sql(f"select * from images where image_id = '{c['image_id']}'").to_pylist()[0]
    assert (image["status"], image["reason"]) == ("broken", "undecodable")
    event = store.table("decode_failures").to_pylist()
    assert [(e["image_id"], e["event"], e["error"]) for e in event] == [
        (c["image_id"], "failed", "decode_error")
    ]
    # Every count agrees: 2 broken files (the truncated one and this one).
    info = store_status(store)
    assert info["files"]["by_status"]["broken"] == 2
    assert info["files"]["by_reason"]["broken/undecodable"] == 1
    assert info["images"]["by_status"]["broken"] == 2
    readme = store.sql("select rel_path from files where status <> 'ok'")["rel_path"]
    assert sorted(readme.to_pylist()) == ["bad/c.png", "bad/cut.jpg"]
    by_status = {r["status"]: r["n"] for r in overview(open_context(store)).data["by_status"]}
    assert by_status["broken"] == 2
    assert "2 broken files (1 undecodable" in sensed_line(store, result["signals"])
    # A rescan neither erases it nor sees a change; a re-run records nothing new.
    again = scan_sources(store, [collection], workers=1, progress=False)
    assert again["events"] == {} and files_of(store)["bad/c.png"]["reason"] == "undecodable"
    assert sense(store)["undecodable"] == {"failed": 0, "cleared": 0, "undecodable": 1}
    assert store.table("decode_failures").num_rows == 1
    # A byte copy scanned later is the same image: broken at once.
    (collection / "copy.png").write_bytes((collection / "bad" / "c.png").read_bytes())
    scan_sources(store, [collection], workers=1, progress=False)
    assert files_of(store)["copy.png"]["reason"] == "undecodable"


def test_a_run_killed_before_recording_is_caught_up(
    collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = scanned(tmp_path, collection)

    def killed(store: Store, run: object) -> dict:
        raise KeyboardInterrupt  # as a kill after the chunks were committed

    monkeypatch.setattr(decode_failures, "record_decode_failures", killed)
    with pytest.raises(KeyboardInterrupt):
        sense(store)
    assert files_of(store)["bad/c.png"]["status"] == "ok"
    monkeypatch.undo()
    result = sense(store)  # nothing left to decode, but the failure is recorded
    assert result["signals"]["processed"] == 0
    assert files_of(store)["bad/c.png"]["reason"] == "undecodable"


def test_replaced_bytes_or_a_later_good_decode_clear_it(
    collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.core import decode
    from lamina.passes.thumbs import thumbs_config

    store = scanned(tmp_path, collection)
    write_corrupt_png(collection / "d.png", 7)
    scan_sources(store, [collection], workers=1, progress=False)
    sense(store)
    assert files_of(store)["d.png"]["reason"] == "undecodable"
    # The file replaced by a good one: new bytes, a new image, nothing to fold.
    write_photo(collection / "bad" / "c.png", 9, fmt="PNG")
    scan_sources(store, [collection], workers=1, progress=False)
    assert files_of(store)["bad/c.png"]["status"] == "ok"
    sense(store)
    assert files_of(store)["bad/c.png"]["status"] == "ok"
    # The same bytes decoded later with success (a newer decoder): cleared.
    good = decode.Decoded(np.zeros((8, 8, 3), np.uint8), 8, 8, "RGB", False, "0" * 64, None, None)
    monkeypatch.setattr(decode, "decode_batch", lambda batch, recipe: [good] * batch.num_rows)
    result = sense(store, [("thumbs", thumbs_config(store))])
    assert result["undecodable"]["cleared"] >= 1
    assert files_of(store)["d.png"]["status"] == "ok"
    events = store.sql("select event from decode_failures where event = 'cleared'")
    assert events.num_rows == result["undecodable"]["cleared"]


def test_a_pass_that_says_it_all_in_error_is_read_too(collection: Path, tmp_path: Path) -> None:
    from lamina.passes.thumbs import thumbs_config

    store = scanned(tmp_path, collection)
    result = sense(store, [("thumbs", thumbs_config(store))])  # error = "reason: message"
    assert result["undecodable"]["failed"] == 1
    c = files_of(store)["bad/c.png"]
    assert (c["status"], c["reason"]) == ("broken", "undecodable")
    assert c["detail"].startswith("OSError") and "data stream" in c["detail"]


def test_a_query_that_cannot_spill_under_the_cap_is_tried_with_one_thread(
    collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 1M images a 128 MB cap with DuckDB's default threads could not pin its blocks; the
    # recording must be retried (one thread, then a larger cap), never fail the run, and
    # never record an event twice.
    import duckdb

    store = scanned(tmp_path, collection)
    real_connect = duckdb.connect
    tries: list[tuple[str, int]] = []

    class Tight:
        """A connection that is out of memory on the events' count while threads > 1."""

        def __init__(self, *a: object, **k: object) -> None:
            self.con = real_connect(*a, **k)

        def execute(self, sql: str, *args: object) -> object:
            if "group by 1" in sql:
                (limit,) = self.con.execute("select current_setting('memory_limit')").fetchone()
                (threads,) = self.con.execute("select current_setting('threads')").fetchone()
                tries.append((str(limit), int(threads)))
                if threads != 1:
                    raise duckdb.OutOfMemoryException("failed to pin block (a test)")
            return self.con.execute(sql, *args)

        def __getattr__(self, name: str) -> object:  # the store's own queries
            return getattr(self.con, name)

    monkeypatch.setattr(duckdb, "connect", Tight)
    sense(store)
    assert len(tries) == 2 and tries[1][1] == 1 and tries[0][0] == tries[1][0]
    assert files_of(store)["bad/c.png"]["reason"] == "undecodable"
    events = store.sql("select image_id, event from decode_failures").to_pylist()
    assert len(events) == len({(e["image_id"], e["event"]) for e in events}) >= 1
