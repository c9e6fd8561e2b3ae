"""Progress of long loops, the one helper for tfnas and the profilers (no torch; tqdm when installed).

On a terminal a tqdm bar. Elsewhere (CI, nohup, notebooks, a device's log) plain lines:
a tqdm bar redraws with carriage returns, which a log file shows as one endless line,
so instead one line every ``every_s`` seconds and one at the end, each saying how far
the loop got and how long the rest will take.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

PLAIN_EVERY_S = 30.0


class Progress:
    """Counts finished items out of ``total``: iterate over it (``iterable``) or call ``update``.

    ``enabled``: None shows a tqdm bar on a terminal and plain lines otherwise, True forces the
    bar (plain lines when tqdm is missing), False shows nothing.
    """

    def __init__(
        self,
        total: int | None = None,
        initial: int = 0,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        *,
        iterable: Iterable | None = None,
        desc: str = "",
        unit: str = "graph",
        every_s: float | None = None,
    ) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.done = self._start_done = initial
        self.enabled = enabled is not False
        self.stream = stream
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self.postfix: dict[str, Any] = {}
        self._note = ""
        self._start = self._last = time.monotonic()
        self._bar: Any = None
        out = self.stream or sys.stderr
        if self.enabled and (enabled is True or getattr(out, "isatty", lambda: False)()):
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(
                    total=total, initial=initial, desc=desc or None, unit=unit, file=out, leave=False,
                    dynamic_ncols=True,
                )  # fmt: skip

    # ---- what the loop reports
    def set_postfix(self, values: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.postfix = {**(values or {}), **kwargs}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=False)

    def update(self, note: str = "") -> None:
        """One more item finished; ``note`` says which (shown after the count)."""
        self.done += 1
        if note:
            self._note = note[:60]
            if self._bar is not None:
                self._bar.set_postfix_str(self._note, refresh=False)
        self._show()

    def _show(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._write(self.line(now - self._start, done=False))
            self._last = now

    def close(self, finished: bool = True) -> None:
        """End the display; a plain-line display says where it got (unless the loop failed)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif finished and self.done > self._start_done:
            self._write(self.line(time.monotonic() - self._start, done=True))
        self.enabled = False  # closed once

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("Progress was built without an iterable; call update() instead")
        failed = False
        try:
            for item in self.iterable:
                self.done += 1  # counted when handed out: a loop that breaks still counts its last item
                yield item
                self._show()
        except GeneratorExit:  # the loop stopped early on purpose (e.g. its step budget)
            raise
        except BaseException:
            failed = True
            raise
        finally:
            self.close(finished=not failed)

    # ---- plain lines
    def line(self, elapsed: float, done: bool) -> str:
        n = self.done - self._start_done
        per = elapsed / max(n, 1)
        head = f"{self.desc}: " if self.desc else ""
        count = f"{self.done} {self.unit}s"
        if self.total:
            count = f"{self.done}/{self.total} {self.unit}s, {self.total - self.done} left"
        eta = f", ~{per * (self.total - self.done):.0f} s left" if self.total and not done else ""
        extra = "".join(f" {k}={v}" for k, v in self.postfix.items()) + (f" {self._note}" if self._note else "")
        return f"{head}{count}, {elapsed:.0f} s ({per:.2f} s/{self.unit}{eta}){extra}"

    def _write(self, text: str) -> None:
        out = self.stream or sys.stderr
        out.write(text + "\n")
        out.flush()


def progress(
    iterable: Iterable | None = None,
    total: int | None = None,
    desc: str = "",
    enabled: bool | None = None,
    unit: str = "step",
    initial: int = 0,
) -> Progress:
    """``Progress`` over ``iterable`` (or, without one, a counter to ``update``); see ``Progress`` for ``enabled``."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return Progress(total, initial, enabled, iterable=iterable, desc=desc, unit=unit)
