"""Progress: a bar on a terminal, a log line every few seconds otherwise (CI, cron, nohup)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("lamina")


class Progress:
    """Counts units of work done out of a total.

    Example:
        >>> with Progress(10, "scan", enabled=False) as bar:
        ...     bar.update(10)
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "file",
        enabled: bool = True,
        every_s: float = 10.0,
    ) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.enabled = enabled
        self.every_s = every_s
        self._bar: Any = None
        self._t0 = self._last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            rate = self.done / max(now - self._t0, 1e-9)
            log.info("%s: %d/%d %ss (%.0f/s)", self.desc, self.done, self.total, self.unit, rate)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
