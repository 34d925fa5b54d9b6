"""CSV that every reader splits back into the rows it was written as.

Python's csv writer (and pandas' `to_csv`, built on it) quotes a cell that holds a
character of its line terminator. lamina ends lines with "\\n", so a cell holding a
carriage return (a file may be named `a\\rb.jpg`) went out unquoted, and every reader
(Python's csv, pandas, spreadsheets) ended the row there. Here a row with a "\\r" in a
cell is written with every cell quoted; every other row is written as before, byte for
byte.

Example:
    >>> import io
    >>> buf = io.StringIO()
    >>> CsvWriter(buf).writerows([["a.jpg", 1], ["a\\rb.jpg", 2]])
    >>> buf.getvalue()
    'a.jpg,1\\n"a\\rb.jpg","2"\\n'
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def _has_cr(cells: Iterable[Any]) -> bool:
    return any(isinstance(c, str) and "\r" in c for c in cells)


class CsvWriter:
    """`csv.writer(fh, lineterminator="\\n")` that also keeps a "\\r" inside its cell."""

    def __init__(self, fh: TextIO) -> None:
        self._minimal = csv.writer(fh, lineterminator="\n")
        self._quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: Sequence[Any]) -> None:
        (self._quoted if _has_cr(row) else self._minimal).writerow(row)

    def writerows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def frame_csv(frame: Any) -> str:
    """A pandas DataFrame as CSV text (no index), every cell quoted when one holds a "\\r"
    (pandas quotes per file, not per row).

    Example:
        >>> import pandas as pd
        >>> frame_csv(pd.DataFrame({"name": ["a\\rb"]}))
        '"name"\\n"a\\rb"\\n'
    """
    from pandas.api.types import is_numeric_dtype

    needs_quotes = _has_cr(map(str, frame.columns)) or any(
        _has_cr(frame.iloc[:, i]) for i in range(frame.shape[1])
        if not is_numeric_dtype(frame.dtypes.iloc[i])
    )  # fmt: skip
    return frame.to_csv(index=False, quoting=csv.QUOTE_ALL if needs_quotes else csv.QUOTE_MINIMAL)
