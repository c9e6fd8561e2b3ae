"""``evaluate_genotype``: a genotype's evaluation network counted, exported, parity-checked and timed.

What ``tfnas darts eval`` reports: parameters without the auxiliary head and mult-adds (the papers' figures),
then optionally an ONNX export checked against torch and an ONNX Runtime timing. Timing without ``onnx``
exports into a temporary folder, so nothing is left in the working folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfnas.darts.network import DartsEvalNet, build_eval_net, count_params_without_aux
from tfnas.darts.shapes import SETTINGS
from tfnas.darts.space import get_genotype
from tfnas.export.onnx import check_parity, export_onnx
from tfnas.latency.measure import onnx_drift_cancelled, onnx_timer
from tfnas.utils.flops import count_macs

Say = Callable[[str], None]


def evaluate_genotype(
    genotype: str | Path,
    setting: str = "cifar",
    *,
    num_classes: int | None = None,
    C: int | None = None,
    num_cells: int | None = None,
    resolution: int | None = None,
    batch: int = 1,
    onnx: str | Path | None = None,
    measure: bool = False,
    threads: int = 1,
    say: Say = print,
) -> dict[str, Any]:
    """The report of ``genotype`` (a published name or a genotype JSON) built in ``setting`` (its defaults for
    ``C``, ``num_cells`` and ``resolution``); ``onnx``: export there; ``measure``: time the ONNX graph."""
    net = build_eval_net(get_genotype(genotype), setting, num_classes, C=C, num_cells=num_cells)
    res = resolution or SETTINGS[setting]["data"]["resolution"]
    report: dict[str, Any] = {
        "genotype": str(genotype),
        "setting": setting,
        "C": net.net.C,
        "num_cells": net.net.num_cells,
        "resolution": res,
        "params_without_aux": count_params_without_aux(net),
        "mult_adds": count_macs(net, (1, net.in_channels, res, res)),
    }
    say(
        f"{genotype} ({setting}, C={net.net.C}, {net.net.num_cells} cells): "
        f"{report['params_without_aux'] / 1e6:.3f} M params (no aux head), "
        f"{report['mult_adds'] / 1e6:.1f} M mult-adds at {res}x{res}"
    )
    if onnx or measure:
        with tempfile.TemporaryDirectory(prefix="tfnas-darts-eval-") as tmp:
            path = Path(onnx) if onnx else Path(tmp) / "eval_net.onnx"
            shape = (batch, net.in_channels, res, res)
            report.update(export_and_measure(net, path, shape, measure, threads, say, temporary=not onnx))
            if not onnx:
                report["onnx"] = None
    return report


def export_and_measure(
    net: DartsEvalNet,
    path: Path,
    shape: tuple[int, ...],
    measure: bool,
    threads: int,
    say: Say = print,
    temporary: bool = False,
) -> dict[str, Any]:
    """Export ``net`` to ``path`` (checked, parity-tested against torch) and, with ``measure``, time it with ONNX
    Runtime; returns the report's ``onnx``, ``parity_max_abs_diff`` and ``latency_ms`` fields."""
    export_onnx(net, path, shape)
    fields: dict[str, Any] = {"onnx": str(path), "parity_max_abs_diff": check_parity(net, path, shape, atol=1e-4)}
    say(f"ONNX: {'(temporary)' if temporary else path} (checker ok, max |torch - ort| = "
        f"{fields['parity_max_abs_diff']:.2e})")  # fmt: skip
    if measure:
        fig = onnx_drift_cancelled([onnx_timer(path, shape, "ort", threads)], threads)[0][0]
        fields["latency_ms"] = fig.to_dict()
        say(f"latency (ort, {threads} thread(s), batch {shape[0]}): {fig.describe()}")
    return fields
