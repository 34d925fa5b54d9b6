"""A scan's listing written to a Parquet file, read back a slice at a time.

The walk writes its rows to the file as it goes (`lamina.passes.scan.spill_listing`), so
that the probe and the commit (`lamina.manifest.commit`) each hold a slice of the listing
at a time, never all of it: a scan's memory does not grow with the number of files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lamina.core.memory import give_back_memory  # noqa: F401 - its callers here import it

# Rows per row group of a listing file, and per slice read back by default: small, so that
# what a step holds of the listing is small from the first thousands of files on.
SPILL_ROWS = 4_096


@dataclass(frozen=True)
class Listing:
    """A listing in the Parquet file `path`, sorted by source and path: `rows` rows,
    `files` regular files of `size` bytes in all.

    Example:
        >>> listing = spill_listing([Path("photos")], Path("/tmp/l.parquet"))  # doctest: +SKIP
        >>> sum(b.num_rows for b in listing.batches(["file_key"])) == listing.rows  # doctest: +SKIP
        True
    """

    path: Path
    rows: int
    files: int
    size: int

    @property
    def schema(self) -> pa.Schema:
        """The listing's columns."""
        with pq.ParquetFile(self.path) as f:
            return f.schema_arrow

    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = SPILL_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """The rows in order, `batch_size` at a time (only `columns`, when given)."""
        with pq.ParquetFile(self.path, pre_buffer=False) as f:
            yield from f.iter_batches(
                batch_size=batch_size, columns=list(columns) if columns else None
            )

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every row (only `columns`, when given) as one table: for the steps that need
        the whole listing at once, and read only the columns they need."""
        with pq.ParquetFile(self.path) as f:
            return f.read(columns=list(columns) if columns else None)


@contextlib.contextmanager
def system_memory_pool() -> Iterator[None]:
    """Arrow allocates from the C library's malloc for the block, not from its default
    pool: the default (mimalloc) keeps what a step frees, so a scan's main process would
    keep its largest step's memory and more (measured with bench/scan.py: 60 MB more at
    100,000 files); malloc gives it back (`give_back_memory`). Buffers remember their
    pool, so those made before or after are freed right.

    Example:
        >>> with system_memory_pool():
        ...     pa.default_memory_pool().backend_name
        'system'
    """
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)
