"""The Ray executor on a Ray head of the tests' own (2 CPUs): the same tables as the local
executor, failed chunks retried or recorded as the local executor's are, a killed driver
resumed to the same tables, and a cluster that goes away stopping the run with what it
committed. Few and small: a Ray start costs seconds on a loaded machine."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("ray", reason="Ray is optional: pip install 'lamina[scale]'")

from lamina.cli import main
from lamina.core.ledger import Run
from lamina.core.runner import run_map_pass
from lamina.core.store import LOCK_FILE, Store
from lamina.executors.ray import RayExecutor
from tests.conftest import write_photo
from tests.executors.ray_support import FlakyPass, RayHead, inputs, ray_env
from tests.reliability.tables import compare, snapshot

# Each test starts Ray (a head, drivers, workers that load the model): slow, as the
# interruption tests are.
pytestmark = pytest.mark.slow

CHUNK = 8  # rows per chunk: a few chunks from a few dozen images


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    """One Ray head for the module; its clients in this process skip token auth as it does."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.delenv("RAY_ADDRESS", raising=False)
        node = RayHead(cpus=2)
        try:
            yield node
        finally:
            node.kill()
            node.remove()
        assert node.processes() == [], "Ray processes outlived the test cluster"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scanned store: 40 photos of 480x360, a mirrored copy and a truncated file, in
    chunks of 8 rows."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ray")
    src = root / "src"
    for i in range(40):
        write_photo(src / f"d{i % 3}" / f"{i:02d}.jpg", i, size=(480, 360))
    first = Image.open(src / "d0" / "00.jpg")
    first.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "flipped.jpg")
    good = (src / "d0" / "00.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(good[: len(good) // 3])
    store = root / "scanned"
    Store.open(store, create=True, chunk_size=CHUNK)
    lamina(store, "scan", str(src))
    return store


@pytest.fixture(scope="module")
def sensed_locally(scanned: Path) -> Path:
    """The reference: `lamina sense` with the local executor."""
    store = scanned.parent / "local"
    shutil.copytree(scanned, store)
    lamina(store, "sense", "-j", "2")
    return store


def lamina(store: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["--store", str(store), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def copy_of(store: Path, tmp_path: Path) -> Path:
    out = tmp_path / "store"
    shutil.copytree(store, out)
    return out


def committed(store: Path, pass_name: str = "signals") -> int:
    return len(list((store / "ledger" / pass_name).glob("*/chunk-*.json")))


def committed_rows(store: Path, pass_name: str = "signals") -> int:
    records = (store / "ledger" / pass_name).glob("*/chunk-*.json")
    return sum(json.loads(p.read_text())["rows"] for p in records)


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A lamina subprocess, its output into `log` (a pipe nobody reads could fill up)."""
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=ray_env(), stdout=out, stderr=subprocess.STDOUT)


def wait_until_unlocked(store: Path, timeout: float = 30.0) -> None:
    """A killed `--executor ray` command's driver (its forked child, see
    `lamina.executors.supervisor`) dies by PDEATHSIG a moment after it, and the OS drops
    its store lock when it has: wait for that, as a person typing the command again would."""
    deadline = time.monotonic() + timeout
    with (store / LOCK_FILE).open("a") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                assert time.monotonic() < deadline, f"the driver of {store} outlived its command"
                time.sleep(0.05)
                continue
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return


def test_sense_and_embed_on_ray_equal_the_local_executor(
    head: RayHead, scanned: Path, tmp_path: Path
) -> None:
    local = copy_of(scanned, tmp_path / "local")
    on_ray = copy_of(scanned, tmp_path / "ray")
    # sense runs map passes (signals, hashes, thumbs) and global ones (duplicates, flags).
    stages = ["run", "--stages", "sense,embed", "--model", "default", "--offline"]
    # One worker each: every worker loads the model, which is most of this test's time.
    lamina(local, *stages, "-j", "1")
    out = lamina(on_ray, *stages, "-j", "1", "--executor", "ray", "--ray-address", head.address)
    assert "images: 42" in out
    reference, other = snapshot(local), snapshot(on_ray)
    assert {"signals", "hashes", "thumbs", "embed", "duplicates", "flags"} <= {
        name.split("/")[1] for name in reference.tables if name.startswith("layers/")
    }
    assert compare(reference, other) == []
    # Every map chunk was committed by the driver, as local workers commit theirs.
    assert committed(on_ray) == committed(local) == 6  # 42 images in chunks of 8


def test_failed_chunks_are_retried_and_one_that_keeps_failing_is_a_run_error(
    head: RayHead, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    flaky = FlakyPass(
        {"markers": str(markers), "fail_once": [3], "die_once": [9], "fail_always": [14]}
    )
    store = Store.open(tmp_path / "s", create=True)
    with (
        store.write_lock("flaky"),
        Run(store, "flaky", {}) as run,
        RayExecutor(head.address) as executor,
    ):
        result = run_map_pass(
            store, flaky, inputs(20), run, chunk_size=5, progress=False, executor=executor
        )
    # Chunks [0-4] (raised once) and [5-9] (its worker died) came back on a retry; [10-14]
    # fails every time and is the run's error; [15-19] ran once.
    assert (result.processed, result.chunks, len(result.failed_chunks)) == (15, 3, 1)
    table = store.table(FlakyPass.name).sort_by("image_id")
    xs = [int(i[2:]) for i in table["image_id"].to_pylist()]
    assert xs == [*range(10), *range(15, 20)]
    assert table["y"].to_pylist() == [2 * x for x in xs]
    assert set(table["pid"].to_pylist()).isdisjoint({os.getpid()})  # computed by Ray workers
    assert sorted(p.name for p in markers.iterdir()) == ["3", "9"]  # each failed once
    errors = [e for e in run.errors if e["kind"] == "chunk"]
    assert len(errors) == 1 and "row 14 always fails" in errors[0]["message"]


def test_a_killed_driver_resumes_to_the_same_tables(
    head: RayHead, sensed_locally: Path, scanned: Path, tmp_path: Path
) -> None:
    store = copy_of(scanned, tmp_path)
    cmd = [sys.executable, "-m", "lamina.cli", "--store", str(store), "sense"]
    cmd += ["--executor", "ray", "--ray-address", head.address]
    proc = start(cmd, tmp_path / "driver.log")
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and not committed(store):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-2000:]
    assert 0 < committed(store) < 6, "killed after the first commit, before the last"
    wait_until_unlocked(store)
    lamina(store, "sense", "--executor", "ray", "--ray-address", head.address)
    assert compare(snapshot(sensed_locally), snapshot(store)) == []


def test_a_cluster_that_goes_away_stops_the_run_with_what_it_committed(
    sensed_locally: Path, scanned: Path, tmp_path: Path
) -> None:
    doomed = RayHead(cpus=2)
    try:
        store = copy_of(scanned, tmp_path)
        cmd = [sys.executable, "-m", "lamina.cli", "--store", str(store), "sense"]
        cmd += ["--executor", "ray", "--ray-address", doomed.address]
        proc = start(cmd, tmp_path / "driver.log")
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and not committed(store):
            time.sleep(0.02)
        doomed.kill()
        proc.wait(timeout=120)
    finally:
        doomed.kill()
        doomed.remove()
    message = (tmp_path / "driver.log").read_text()
    assert proc.returncode == 2, message[-2000:]
    assert "the Ray cluster at" in message and "went away" in message
    assert "committed and stay" in message and "Traceback" not in message
    assert 0 < committed(store) < 6
    rows = committed_rows(store)
    # The re-run (here on the local executor) continues from what was committed.
    summary = json.loads(lamina(store, "sense", "--json"))
    assert summary["passes"]["signals"]["already_done"] == rows
    assert compare(snapshot(sensed_locally), snapshot(store)) == []
