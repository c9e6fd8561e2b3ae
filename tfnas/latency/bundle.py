"""Write a profiling bundle: one small ONNX graph per (key, width), plus a manifest.

The bundle is everything a device needs to build a latency table without PyTorch
(``python -m profilers run BUNDLE``). One writer serves every family: a family
(``mbv2.bundle``, ``darts.latency``) lists ``BundleGraph`` items (key, width, a builder
of the module a deployed network runs, the input shape) and ``write_graphs`` exports
them. Graph files are named by key, width and batch and written atomically, so re-running skips what exists and an interrupted run
resumes; the manifest is (re)written at the end. Large weights are left for the device
to generate (``profilers.weights``): a bundle of MBs instead of GBs.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from profilers.bundle import MANIFEST_NAME, manifest_document
from profilers.weights import strip_weights
from tfnas.export.onnx import quiet_export
from tfnas_base.atomic import atomic_path, atomic_write_json
from tfnas_base.progress import Progress, progress


@dataclass(frozen=True)
class BundleGraph:
    """One graph of a bundle: the module (built when exported) at its deployment input shape."""

    key: str
    width: int | None
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]


def graph_name(key: str, width: int | None, batch: int) -> str:
    """A filesystem-safe, unique file name for one graph (``g`` marks weight-less graphs of bundle version 2,
    so an old bundle folder's graphs with embedded weights are not mistaken for them)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    w = "fixed" if width is None else f"w{width}"
    return f"graphs/{slug}-{digest}_{w}_b{batch}g.onnx"


def export_graph(
    module: nn.Module, path: Path, full: tuple[int, int, int, int], strip: bool = True, opset: int = 17
) -> None:
    """Export ``module`` (eval mode) for input shape ``full``; ``strip``: leave the large weights to the device.

    Why not trace at full size: tracing runs the convolutions in PyTorch, ~0.5 s per
    graph at 224x224 on CPU. The graph of these static conv blocks does not depend
    on the spatial size, so we trace at 8x8 with symbolic batch/height/width and then
    pin the input to the deployment shape and re-infer the others (~15x faster).
    """
    import onnx

    module = module.eval()
    small = (1, full[1], min(full[2], 8), min(full[3], 8))
    with torch.no_grad():
        rank = module(torch.zeros(small)).dim()
    dyn = {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "oh", 3: "ow"} if rank == 4 else {0: "n"}}
    with atomic_path(path, ".tmp.onnx") as tmp:
        quiet_export(module, torch.zeros(small), tmp, opset, dynamic_axes=dyn)
        model = onnx.load(str(tmp))
        for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, full):
            dim.Clear()
            dim.dim_value = value
        del model.graph.value_info[:]
        for dim in model.graph.output[0].type.tensor_type.shape.dim:
            dim.Clear()
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model)
        if strip:
            strip_weights(model)  # the device generates them (profilers.weights)
        onnx.save(model, str(tmp))


def write_graphs(
    out_dir: str | Path,
    graphs: Sequence[BundleGraph],
    space: str,
    batch: int,
    resolution: int,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Export every graph not yet in ``out_dir`` (resumable) and write the manifest; return the folder."""
    out = Path(out_dir)
    (out / "graphs").mkdir(parents=True, exist_ok=True)
    entries, exported, t0 = [], 0, time.perf_counter()
    bar = _progress(len(graphs), progress)
    with _one_torch_thread():  # tracing tiny graphs: extra threads only contend (4x slower on 2 busy cores)
        for g in graphs:
            name = graph_name(g.key, g.width, batch)
            if not (out / name).is_file():
                export_graph(g.build(), out / name, g.input_shape)
                exported += 1
            entries.append({"key": g.key, "width": g.width, "file": name, "input_shape": list(g.input_shape)})
            bar.update()
    bar.close()
    info = {**(meta or {}), "exported_now": exported, "export_s": round(time.perf_counter() - t0, 2)}
    atomic_write_json(out / MANIFEST_NAME, manifest_document(space, batch, resolution, entries, info))
    return out


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(total: int, enabled: bool) -> Progress:
    return progress(total=total, desc="bundle", enabled=None if enabled else False, unit="graph")
