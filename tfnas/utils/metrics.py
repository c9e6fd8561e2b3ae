"""Per-step scalar logging to CSV and JSON Lines, and simple line plots.

``metrics.csv`` keeps the union of all keys seen as its columns: when a new
key appears the file is rewritten (atomically) with the wider header, so it
always parses with any CSV reader. ``metrics.jsonl`` gets one JSON object per
``log`` call. Both are flushed on every row, so a crash loses nothing logged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfnas.utils.io import save_figure
from tfnas_base.atomic import atomic_write_text

CSV_NAME = "metrics.csv"
JSONL_NAME = "metrics.jsonl"


def _scalar(value: Any) -> Any:
    """Turn tensors / numpy scalars into python numbers; keep str, bool, int, float, None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return float(value)


def _json_value(value: Any) -> Any:
    # Strict JSON has no NaN/Infinity; write null so every JSON reader accepts the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _parse_csv_value(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _step_of(row: dict[str, Any]) -> int | None:
    try:
        return int(float(row.get("step")))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class MetricsLogger:
    """Append ``step`` + scalars to ``out_dir/metrics.csv`` and ``out_dir/metrics.jsonl``.

    Without ``resume`` existing files are replaced; with ``resume`` rows are
    appended, and ``truncate_after(step)`` drops rows logged after the step a
    run resumes from, so a resumed run does not duplicate steps.
    """

    def __init__(self, out_dir: str | os.PathLike, resume: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / CSV_NAME
        self.jsonl_path = self.out_dir / JSONL_NAME
        self.columns: list[str] = ["step"]
        if resume and self.csv_path.is_file():
            with open(self.csv_path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            if header:
                self.columns = list(header)
            # Normalise files a crash may have left with a half-written last line.
            self._rewrite_csv(self._read_csv_rows())
            self._rewrite_jsonl(lambda rec: True)
        else:
            self._rewrite_csv([])
            if not resume or not self.jsonl_path.is_file():
                atomic_write_text(self.jsonl_path, "")
        self._open()

    def log(self, step: int, **scalars: Any) -> None:
        row = {"step": int(step), **{k: _scalar(v) for k, v in scalars.items()}}
        new_keys = [k for k in row if k not in self.columns]
        if new_keys:
            self._csv.close()
            rows = self._read_csv_rows()
            self.columns += new_keys
            self._rewrite_csv(rows)
            self._csv = open(self.csv_path, "a", newline="", encoding="utf-8")
        csv.DictWriter(self._csv, fieldnames=self.columns).writerow(row)
        self._csv.flush()
        self._jsonl.write(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
        self._jsonl.flush()

    def truncate_after(self, step: int) -> None:
        """Drop rows whose step is greater than ``step`` from both files."""
        self.close()
        rows = [r for r in self._read_csv_rows() if (_step_of(r) is None or _step_of(r) <= step)]
        self._rewrite_csv(rows)
        self._rewrite_jsonl(lambda rec: _step_of(rec) is None or _step_of(rec) <= step)
        self._open()

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self._csv = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

    def _read_csv_rows(self) -> list[dict[str, str]]:
        with open(self.csv_path, newline="", encoding="utf-8") as f:
            # A row cut short by a crash has missing fields (None); keep what is there.
            return [{k: v for k, v in r.items() if k is not None and v is not None} for r in csv.DictReader(f)]

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.csv_path, buf.getvalue())

    def _rewrite_jsonl(self, keep: Callable[[dict], bool]) -> None:
        kept = []
        if self.jsonl_path.is_file():
            for line in self.jsonl_path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                if isinstance(rec, dict) and keep(rec):
                    kept.append(line + "\n")
        atomic_write_text(self.jsonl_path, "".join(kept))


def read_metrics(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of ``out_dir/metrics.csv`` with numbers parsed; missing cells are None."""
    path = Path(out_dir) / CSV_NAME
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse_csv_value(v or "") for k, v in r.items() if k is not None} for r in csv.DictReader(f)]


def plot_series(
    path_png: str | os.PathLike,
    series: dict[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    hline: float | None = None,
    xs: dict[str, Sequence[float]] | None = None,
) -> Path:
    """Line plot of named series (x = index, or ``xs[name]``) with an optional reference line.

    Uses matplotlib's Agg canvas directly, so it works headless and does not
    change the global pyplot backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in series.items():
        x = list(xs[name]) if xs is not None and name in xs else list(range(len(ys)))
        ax.plot(x, [math.nan if y is None else float(y) for y in ys], label=name)
    if hline is not None:
        ax.axhline(hline, color="k", linestyle="--", linewidth=1.0, label=f"{hline:g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if series or hline is not None:
        ax.legend(loc="best")
    fig.tight_layout()
    return save_figure(fig, path_png)
