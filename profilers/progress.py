"""Progress display: tqdm when installed, else one rewritten stderr line."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Counts finished entries out of ``total`` and shows what remains."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = initial
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._start = time.monotonic()
        self._start_done = initial
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                self._bar = None
            else:
                self._bar = tqdm(total=total, initial=initial, unit="graph", file=self.stream, dynamic_ncols=True)

    def update(self, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note[:60], refresh=False)
            self._bar.update(1)
            return
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        self.stream.write(
            f"\r{self.done}/{self.total} graphs, {self.total - self.done} left, ETA {eta:5.0f}s  {note[:50]:<50}"
        )
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self.stream.write("\n")
            self.stream.flush()
