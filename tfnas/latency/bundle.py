"""Write a profiling bundle: one small ONNX graph per (op signature, grid width), plus a manifest.

The bundle is everything a device needs to build a latency table without
PyTorch (``python -m profilers run BUNDLE``). Graph files are named by key,
width and batch and written atomically, so re-running skips what exists and an
interrupted run resumes; the manifest is (re)written at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from profilers.bundle import MANIFEST_NAME, manifest_document
from profilers.progress import Progress, progress
from profilers.weights import strip_weights
from tfnas.errors import ConfigError
from tfnas.latency.signatures import Signature, build_signature_module, space_signatures
from tfnas.latency.table import WidthGrid, make_grid
from tfnas.spaces.mbv2 import MBV2Space
from tfnas.utils.io import atomic_path, atomic_write_json

WidthFilter = Callable[[Signature, int], bool]


def graph_name(key: str, width: int | None, batch: int) -> str:
    """A filesystem-safe, unique file name for one graph (``g`` marks weight-less graphs of bundle version 2,
    so an old bundle folder's graphs with embedded weights are not mistaken for them)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    w = "fixed" if width is None else f"w{width}"
    return f"graphs/{slug}-{digest}_{w}_b{batch}g.onnx"


def plan_bundle(
    space: MBV2Space,
    grid: WidthGrid,
    resolution: int | None = None,
    widths_filter: WidthFilter | None = None,
    keys: set[str] | None = None,
) -> list[tuple[Signature, int | None]]:
    """Every (signature, width) the bundle holds, fixed parts first."""
    plan: list[tuple[Signature, int | None]] = []
    for sig in space_signatures(space, resolution):
        if keys is not None and sig.key not in keys:
            continue
        if sig.width_range is None:
            plan.append((sig, None))
            continue
        for w in grid.widths(*sig.width_range):
            if widths_filter is None or widths_filter(sig, w):
                plan.append((sig, w))
    return plan


def export_graph(
    space: MBV2Space, sig: Signature, width: int | None, path: Path, batch: int, strip: bool = True
) -> None:
    """Export the module a derived network runs for ``sig`` at ``width`` (eval mode, BN folded).

    ``strip``: leave the large weights for the device to generate (``profilers.weights``).

    Why not trace at full size: tracing runs the convolutions in PyTorch, ~0.5 s per
    graph at 224x224 on CPU. The graph of these static conv blocks does not depend
    on the spatial size, so we trace at 8x8 with symbolic batch/height/width and then
    pin the input to the deployment shape and re-infer the others (~15x faster).
    """
    import onnx
    import torch

    from tfnas.export.onnx import _quiet

    module = build_signature_module(space, sig, width).eval()
    full = sig.input_shape(batch)
    small = (1, full[1], min(full[2], 8), min(full[3], 8))
    dyn = {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n"} if sig.kind == "head" else {0: "n", 2: "oh", 3: "ow"}}
    with atomic_path(path, ".tmp.onnx") as tmp:
        with torch.no_grad(), _quiet():
            torch.onnx.export(
                module,
                (torch.zeros(small),),
                str(tmp),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                opset_version=17,
                dynamic_axes=dyn,
                do_constant_folding=True,
            )
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
            strip_weights(model)  # the device generates them: a bundle of MBs instead of GBs (profilers.weights)
        onnx.save(model, str(tmp))


def write_bundle(
    space: MBV2Space,
    out_dir: str | Path,
    batch: int = 1,
    resolution: int | None = None,
    grid: str | WidthGrid = "sparse",
    widths_filter: WidthFilter | None = None,
    keys: set[str] | None = None,
    progress: bool = True,
    **grid_options: Any,
) -> Path:
    """Write (or complete) a bundle in ``out_dir`` and return its folder.

    ``grid``: "sparse" (both alignment classes, ~``intervals`` segments each) or
    "dense" (every width: for validating the sparse grid). ``widths_filter`` and
    ``keys`` restrict the bundle (benchmarks use them to sample signatures).
    """
    if batch < 1:
        raise ConfigError(f"batch = {batch}: expected an integer >= 1")
    res = resolution or space.resolution
    if space.final_size(res) < 1 or res < 8:
        raise ConfigError(f"resolution = {res}: too small for space {space.name!r}")
    g = grid if isinstance(grid, WidthGrid) else make_grid(grid, **grid_options)
    out = Path(out_dir)
    (out / "graphs").mkdir(parents=True, exist_ok=True)
    plan = plan_bundle(space, g, res, widths_filter, keys)
    entries, exported, t0 = [], 0, time.perf_counter()
    bar = _progress(len(plan), progress)
    with _one_torch_thread():  # tracing tiny graphs: extra threads only contend (4x slower on 2 busy cores)
        for sig, width in plan:
            name = graph_name(sig.key, width, batch)
            path = out / name
            if not path.is_file():
                export_graph(space, sig, width, path, batch)
                exported += 1
            entries.append({"key": sig.key, "width": width, "file": name, "input_shape": list(sig.input_shape(batch))})
            bar.update()
    bar.close()
    meta = {
        "grid": g.to_dict(),
        "space_source": space.source,
        "signatures": len({e["key"] for e in entries}),
        "exported_now": exported,
        "export_s": round(time.perf_counter() - t0, 2),
    }
    manifest = manifest_document(space.name, batch, res, entries, meta, weights="generated")
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return out


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(total: int, enabled: bool) -> Progress:
    return progress(total=total, desc="bundle", enabled=None if enabled else False, unit="graph")
