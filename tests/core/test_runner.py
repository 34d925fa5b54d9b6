from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core.ledger import Run, done_chunks
from lamina.core.passes import REGISTRY, Pass, register
from lamina.core.runner import run_map_pass
from lamina.core.store import Store


@dataclass(frozen=True)
class DoubleConfig:
    factor: int = 2


class Double(Pass):
    """A toy map pass: doubles `x`; fails on x == 13 while `fail_on_13` is set."""

    name = "double_test"
    version = "1"
    Config = DoubleConfig
    schema = pa.schema([("image_id", pa.string()), ("y", pa.int64()), ("error", pa.string())])
    calls: ClassVar[list[int]] = []
    fail_on_13: ClassVar[int] = 0  # how many more times x == 13 raises

    def process(self, batch: pa.Table) -> pa.Table:
        xs = batch["x"].to_pylist()
        Double.calls.append(len(xs))
        if 13 in xs and Double.fail_on_13 > 0:
            Double.fail_on_13 -= 1
            raise RuntimeError("transient failure")
        return pa.table(
            {
                "image_id": batch["image_id"],
                "y": [None if x < 0 else x * self.config.factor for x in xs],
                "error": ["negative" if x < 0 else None for x in xs],
            }
        )


@pytest.fixture(autouse=True)
def registered() -> None:
    register(Double)
    Double.calls.clear()
    Double.fail_on_13 = 0
    yield
    REGISTRY.pop(Double.name, None)


def inputs(n: int) -> pa.Table:
    return pa.table({"image_id": [f"id{i:04d}" for i in range(n)], "x": list(range(n))})


def layer(store: Store, p: Pass) -> pa.Table:
    return store.table(p.name).sort_by("image_id")


def test_runs_chunks_and_skips_done_rows(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    p = Double()
    with Run(store, "test", {}) as run:
        result = run_map_pass(store, p, inputs(25), run, workers=1, chunk_size=10, progress=False)
    assert (result.processed, result.chunks, result.already_done) == (25, 3, 0)
    assert layer(store, p)["y"].to_pylist() == [2 * i for i in range(25)]
    assert len(done_chunks(store.ledger_dir(p.name, p.layer_id))) == 3
    with Run(store, "test", {}) as run:  # inputs grew: only the new rows are processed
        again = run_map_pass(store, p, inputs(30), run, workers=1, chunk_size=10, progress=False)
    assert (again.processed, again.already_done) == (5, 25)
    assert layer(store, p).num_rows == 30  # no duplicate rows


def test_error_rows_are_counted_not_raised(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    batch = pa.table({"image_id": ["a", "b"], "x": [-1, 3]})
    with Run(store, "test", {}) as run:
        result = run_map_pass(store, Double(), batch, run, workers=1, progress=False)
    assert result.error_rows == 1
    assert store.table("double_test").sort_by("image_id")["error"].to_pylist() == ["negative", None]


def test_failed_chunk_is_retried_then_recorded(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    Double.fail_on_13 = 1  # fails once, then succeeds on the retry
    with Run(store, "test", {}) as run:
        result = run_map_pass(
            store, Double(), inputs(20), run, workers=1, chunk_size=10, progress=False
        )
    assert result.processed == 20 and not result.failed_chunks
    Double.fail_on_13 = 99  # never succeeds: recorded as a run error, the rest committed
    store2 = Store.open(tmp_path / "s2", create=True)
    with Run(store2, "test", {}) as run:
        result = run_map_pass(
            store2, Double(), inputs(20), run, workers=1, chunk_size=10, progress=False
        )
    assert result.processed == 10 and len(result.failed_chunks) == 1
    assert run.status == "failed" and run.errors[0]["rows"] == 10
    assert "transient failure" in run.errors[0]["message"]


def test_part_without_ledger_record_is_redone(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    p = Double()
    with Run(store, "test", {}) as run:
        run_map_pass(store, p, inputs(10), run, workers=1, chunk_size=5, progress=False)
    # A kill between a part's write and its record: drop one record.
    records = sorted(store.ledger_dir(p.name, p.layer_id).glob("chunk-*.json"))
    records[0].unlink()
    with Run(store, "test", {}) as run:
        result = run_map_pass(store, p, inputs(10), run, workers=1, chunk_size=5, progress=False)
    assert result.processed == 5
    assert layer(store, p)["image_id"].to_pylist() == [f"id{i:04d}" for i in range(10)]


def test_config_names_the_layer(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    a, b = Double(), Double({"factor": 3})
    assert a.layer_id != b.layer_id
    with Run(store, "test", {}) as run:
        run_map_pass(store, a, inputs(3), run, workers=1, progress=False)
        result = run_map_pass(store, b, inputs(3), run, workers=1, progress=False)
    assert result.processed == 3  # a different config shares nothing
    assert sorted(store.table("double_test")["y"].to_pylist()) == [0, 3, 6]  # newest layer


def test_one_pass_under_two_configs_in_one_run(tmp_path: Path) -> None:
    from lamina.core.runner import result_keys, run_map_passes

    store = Store.open(tmp_path / "s", create=True)
    a, b = Double(), Double({"factor": 3})
    with Run(store, "test", {}) as run:
        result = run_map_passes(
            store, [a, b], inputs(12), run, workers=1, chunk_size=5, progress=False
        )
    keys = result_keys([a, b])
    assert keys == [f"double_test/{a.layer_id}", f"double_test/{b.layer_id}"]
    assert set(result) == set(keys)
    assert [result[k].processed for k in keys] == [12, 12]
    assert result[keys[1]].chunks == 3 and not result[keys[1]].failed_chunks
    for p, factor in ((a, 2), (b, 3)):
        rows = pa.concat_tables(
            pq.read_table(f) for f in store.layer_dir(p.name, p.layer_id).glob("*.parquet")
        ).sort_by("image_id")
        assert rows["y"].to_pylist() == [factor * i for i in range(12)]
    with Run(store, "test", {}) as run:  # each layer resumes on its own
        again = run_map_passes(store, [a, b], inputs(12), run, workers=1, progress=False)
    assert [again[k].already_done for k in keys] == [12, 12]
    with pytest.raises(ValueError, match="same pass and config twice"):
        run_map_passes(store, [a, Double()], inputs(2), run, workers=1, progress=False)


@dataclass(frozen=True)
class NoCfg:
    pass


class Width(Pass):
    """A toy image pass: reads the header width from the inputs."""

    name = "width_test"
    version = "1"
    Config = NoCfg
    schema = pa.schema([("image_id", pa.string()), ("w", pa.int32()), ("path", pa.string())])

    def process(self, batch: pa.Table) -> pa.Table:
        return pa.table(
            {"image_id": batch["image_id"], "w": batch["width"], "path": batch["rel_path"]}
        )


def test_run_pass_over_the_images_of_a_store(tree: Path, tmp_path: Path) -> None:
    from lamina.core.runner import image_inputs, run_pass
    from lamina.jobs.scan import scan_sources

    register(Width)
    try:
        store = Store.open(tmp_path / "store", create=True)
        assert image_inputs(store).num_rows == 0
        scan_sources(store, [tree], workers=1, progress=False)
        inputs = image_inputs(store)
        assert inputs.num_rows == 4  # a, b, c (two files, one image) and the truncated one
        assert all(Path(p).is_file() for p in inputs["abs_path"].to_pylist())
        counts = run_pass(store, "width_test", workers=1, progress=False)
        assert (counts["processed"], counts["already_done"]) == (4, 0)
        rows = store.table("width_test").to_pylist()
        assert {r["w"] for r in rows} == {64}
        assert "dogs/c.png" in {r["path"] for r in rows}  # the first path of a duplicate
        again = run_pass(store, "width_test", workers=1, progress=False)
        assert (again["processed"], again["already_done"]) == (0, 4)
        runs = store.sql("select command, status from runs where command = 'width_test'")
        assert runs.num_rows == 2
    finally:
        REGISTRY.pop(Width.name, None)


def test_decode_chunk_size_spreads_work_over_workers():
    from lamina.core.runner import DECODE_CHUNK_MAX, DECODE_CHUNK_MIN, decode_chunk_size

    # 300 images on 2 workers: 10 chunks, so both workers stay busy to the end; each a
    # multiple of the model passes' batch (32), so that only the last batch is padded.
    assert decode_chunk_size(300, 1024, 2) == 32
    assert decode_chunk_size(1000, 1024, 2) == 96
    assert decode_chunk_size(100_000, 1024, 2) == DECODE_CHUNK_MAX
    assert decode_chunk_size(10, 1024, 8) == DECODE_CHUNK_MIN
    assert decode_chunk_size(10, 4, 8) == 4  # the store's chunk size is a ceiling


# -- kill -9 of the runner: its workers must not outlive it ----------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _workers_of(pid: int) -> list[int]:
    """Pids of the spawned pool workers whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _raw_layer(store: Store, name: str) -> pa.Table:
    """Every committed part of a layer as written, with no deduplication by a reader."""
    layer_dir = next((store.root / "layers" / name).iterdir())
    done = done_chunks(store.root / "ledger" / name / layer_dir.name)
    return pa.concat_tables(pq.read_table(layer_dir / f"part-{c}.parquet") for c in sorted(done))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_runner_leaves_no_worker_to_duplicate_rows(tmp_path: Path) -> None:
    from tests.core.slow_pass import SlowPass
    from tests.core.slow_pass import inputs as slow_inputs

    store_path = tmp_path / "s"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "LAMINA_TEST_SECONDS_PER_ROW": "0.5",  # 2 s a chunk: busy well after the kill
    }
    cmd = [sys.executable, "-m", "tests.core.slow_pass", str(store_path), "24", "4", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    workers: list[int] = []
    try:
        ledger = store_path / "ledger" / SlowPass.name
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(ledger.glob("*/chunk-*.json")):  # the pool is up and committing
                workers = _workers_of(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)  # the parent alone, as the OOM killer does
                break
            time.sleep(0.01)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        assert len(workers) == 2
        # A new run starts at once and cuts the rest into other chunks (a different chunk
        # size, as when the inputs changed), while the old workers would still be busy.
        store = Store.open(store_path)
        with store.write_lock("slow"), Run(store, "slow", {}) as run:
            run_map_pass(
                store, SlowPass(), slow_inputs(24), run, workers=1, chunk_size=5, progress=False
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.05)
        raw = _raw_layer(store, SlowPass.name)
        ids = raw["image_id"].to_pylist()
        assert sorted(ids) == [f"id{i:04d}" for i in range(24)]  # no key twice, none lost
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_chunk_of_a_run_that_lost_the_lock_commits_nothing(tmp_path: Path) -> None:
    from lamina.core.chunk_plan import ChunkTask, PassPart, to_ipc
    from lamina.core.chunk_work import execute_chunk
    from lamina.core.store import LockLostError

    store = Store.open(tmp_path / "s", create=True)
    p = Double()
    with store.write_lock("old"):
        old = store.lock_token
    task = ChunkTask(
        (PassPart(p.name, {"factor": 2}, p.layer_id, "c1", None),),
        str(store.root),
        "old-run",
        to_ipc(inputs(3)),
        old,
    )
    with store.write_lock("new"), pytest.raises(LockLostError):
        execute_chunk(task)
    assert not store.layer_dir(p.name, p.layer_id).exists()
    assert not done_chunks(store.ledger_dir(p.name, p.layer_id))
    with store.write_lock("new"), Run(store, "test", {}) as run:  # holds it: commits
        result = run_map_pass(store, p, inputs(3), run, workers=1, progress=False)
    assert result.processed == 3


class Seen(Pass):
    """A toy pixel pass: returns the 'pixels' it was handed for each row."""

    name = "seen_test"
    version = "1"
    decode = "working"
    schema = pa.schema([("image_id", pa.string()), ("px", pa.string())])

    def process_decoded(self, batch: pa.Table, images: list) -> pa.Table:
        return pa.table({"image_id": batch["image_id"], "px": images})


def test_pixel_passes_get_a_chunk_one_decoded_slice_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lamina.core import chunk_work, decode
    from lamina.core.chunk_plan import PassPart

    decoded: list[int] = []

    def fake_decode(batch: pa.Table, recipe: str) -> list[str]:
        decoded.append(batch.num_rows)
        return [f"px{x}" for x in batch["x"].to_pylist()]

    monkeypatch.setattr(decode, "decode_batch", fake_decode)
    monkeypatch.setattr(chunk_work, "DECODE_SLICE", 3)
    parts = [
        PassPart("seen_test", {}, "1-a", "c", None),
        PassPart("seen_test", {}, "1-a", "c", (1, 4, 5, 9)),  # done for the others
    ]
    outs, seconds = chunk_work._decoded_outputs(inputs(10), parts, [Seen(), Seen()], "working")
    assert decoded == [3, 3, 3, 1]  # each image decoded once, at most 3 held at a time
    assert outs[0].table["px"].to_pylist() == [f"px{i}" for i in range(10)]
    expected = [{"image_id": f"id{i:04d}", "px": f"px{i}"} for i in (1, 4, 5, 9)]
    assert outs[1].table.to_pylist() == expected and outs[1].files == {}
    assert all(s >= 0 for s in seconds)


def test_batches_make_the_layer_of_one_table_and_resume(tmp_path: Path) -> None:
    """`run_map_pass_batches` (inputs a batch at a time) writes the rows `run_map_pass`
    writes for the whole table, cuts no chunk across batches, and skips done rows."""
    from lamina.core.runner import run_map_pass_batches
    from lamina.executors.local import LocalExecutor

    whole = Store.open(tmp_path / "whole", create=True)
    sliced = Store.open(tmp_path / "sliced", create=True)
    p = Double()
    with Run(whole, "test", {}) as run:
        run_map_pass(whole, p, inputs(25), run, workers=1, chunk_size=4, progress=False)
    table = inputs(25)
    batches = [table.slice(0, 10), table.slice(10, 15).to_batches()[0]]  # a table, a batch
    with Run(sliced, "test", {}) as run:
        result = run_map_pass_batches(
            sliced, p, batches, run, total=25, chunk_size=4, progress=False,
            executor=LocalExecutor(1),
        )  # fmt: skip
    assert (result.inputs, result.processed, result.already_done) == (25, 25, 0)
    assert result.chunks == 3 + 4  # 10 rows in chunks of 4, then 15: never one across both
    assert layer(sliced, p).to_pylist() == layer(whole, p).to_pylist()
    with Run(sliced, "test", {}) as run:  # grown by 5 rows: only those are processed
        again = run_map_pass_batches(
            sliced, p, [inputs(30)], run, total=30, chunk_size=4, progress=False,
            executor=LocalExecutor(1),
        )  # fmt: skip
    assert (again.processed, again.already_done) == (5, 25)
    assert layer(sliced, p)["y"].to_pylist() == [2 * i for i in range(30)]


def test_taper_bounds_cuts_the_last_chunks_so_workers_finish_together():
    import itertools

    from lamina.core.runner import DECODE_BATCH, taper_bounds

    # 2,799 rows in chunks of 256 (the sense benchmark's 3,000 files on 2 workers): the
    # last two chunks (495 rows) run alone on one worker at the end; tapered, the last
    # chunks shrink to one batch, every cut but the end stays on a batch boundary, and
    # the rows are the same, in order.
    bounds = [(s, min(256, 2799 - s)) for s in range(0, 2799, 256)]
    tapered = taper_bounds(bounds, workers=2)
    assert tapered[:9] == bounds[:9]
    assert [n for _, n in tapered[9:]] == [128, 96, 64, 64, 32, 32, 32, 32, 15]
    assert all(n % DECODE_BATCH == 0 for _, n in tapered[:-1])
    starts = [s for s, _ in tapered]
    assert starts == sorted(starts) and sum(n for _, n in tapered) == 2799
    assert all(s + n == t for (s, n), (t, _) in itertools.pairwise(tapered))
    # One worker, or chunks already one batch long: nothing to balance.
    assert taper_bounds(bounds, workers=1) == bounds
    small = [(0, 32), (32, 32), (64, 10)]
    assert taper_bounds(small, workers=2) == small
