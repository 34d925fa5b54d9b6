"""A slow toy map pass and a driver that runs it on a process pool, for kill tests.

The pass sleeps per row so that a test can kill the driver while its workers are busy.
Spawned workers import this module (through the executor's warm-up), which registers it.

Run as `python -m tests.core.slow_pass STORE ROWS CHUNK_SIZE WORKERS`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import pyarrow as pa

from lamina.core.passes import REGISTRY, Pass, register

# The driver's workers are slow (set through the environment, which they inherit), so that
# they are still busy after a kill; a test's own runs may be quicker.
SECONDS_PER_ROW = float(os.environ.get("LAMINA_TEST_SECONDS_PER_ROW", "0.05"))


@dataclass(frozen=True)
class SlowConfig:
    factor: int = 2


class SlowPass(Pass):
    """`y = factor * x`, one row at a time, slowly."""

    name = "slow_test"
    version = "1"
    Config = SlowConfig
    schema = pa.schema([("image_id", pa.string()), ("y", pa.int64())])

    def process(self, batch: pa.Table) -> pa.Table:
        ys = []
        for x in batch["x"].to_pylist():
            time.sleep(SECONDS_PER_ROW)  # read at call time: a test may patch it
            ys.append(x * self.config.factor)
        return pa.table({"image_id": batch["image_id"], "y": pa.array(ys, pa.int64())})


if SlowPass.name not in REGISTRY:
    register(SlowPass)


def warm_up() -> None:
    """Pool warm-up: importing this module (to unpickle this function) registers the pass."""


def inputs(n: int) -> pa.Table:
    return pa.table({"image_id": [f"id{i:04d}" for i in range(n)], "x": list(range(n))})


def main(store_path: str, rows: int, chunk_size: int, workers: int) -> None:
    from lamina.core.ledger import Run
    from lamina.core.runner import run_map_pass
    from lamina.core.store import Store
    from lamina.executors.local import LocalExecutor

    store = Store.open(store_path, create=True)
    with store.write_lock("slow"), Run(store, "slow", {}) as run:
        executor = LocalExecutor(workers)
        executor.start(warm_up)
        try:
            run_map_pass(
                store,
                SlowPass(),
                inputs(rows),
                run,
                chunk_size=chunk_size,
                progress=False,
                executor=executor,
            )
        finally:
            executor.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
