"""Metrics logging: CSV union header, JSON Lines, resume truncation, plots."""

from __future__ import annotations

import csv
import json

import torch

from tfnas.utils.metrics import MetricsLogger, plot_series, read_metrics


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_header_grows_with_new_keys(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log(0, loss=1.5)
        log.log(1, loss=torch.tensor(1.25), acc=0.5)
        log.log(2, lr=0.1)
    rows = _csv_rows(tmp_path / "metrics.csv")
    assert list(rows[0].keys()) == ["step", "loss", "acc", "lr"]
    assert rows[0] == {"step": "0", "loss": "1.5", "acc": "", "lr": ""}
    assert rows[1]["loss"] == "1.25" and rows[2]["lr"] == "0.1"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[1] == {"step": 1, "loss": 1.25, "acc": 0.5}
    assert read_metrics(tmp_path)[2] == {"step": 2, "loss": None, "acc": None, "lr": 0.1}


def test_nan_is_null_in_jsonl(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log(0, loss=float("nan"))
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 0, "loss": None}


def test_resume_truncates_rows_after_step(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for s in range(5):
            log.log(s, loss=float(s))
    with MetricsLogger(tmp_path, resume=True) as log:
        log.truncate_after(2)
        log.log(3, loss=30.0, extra=1)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[3] == {"step": 3, "loss": 30.0, "extra": 1} and rows[0]["extra"] is None
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]
    MetricsLogger(tmp_path).close()  # without resume: a fresh log
    assert read_metrics(tmp_path) == []


def test_resume_survives_half_written_line(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log(0, loss=1.0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "lo')
    with MetricsLogger(tmp_path, resume=True) as log:
        log.log(1, loss=0.5)
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]


def test_plot_series_writes_png(tmp_path):
    out = plot_series(
        tmp_path / "plots" / "lat.png",
        {"predicted": [3.0, 2.5, 2.0], "measured": [3.2, 2.6, None]},
        "latency",
        "epoch",
        "ms",
        hline=2.2,
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
