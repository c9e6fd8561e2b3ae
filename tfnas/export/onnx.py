"""ONNX export of any network (derived MBV2 nets, DARTS evaluation nets, bundle graphs), with checker and
PyTorch/ONNX Runtime parity.

The classic TorchScript-based exporter (``dynamo=False``) is used first: for
the static conv nets tfnas derives it is ~30x faster than the torch.export
based exporter and honours the requested opset exactly. The dynamo exporter
is the fallback for torch versions where the classic one is gone or fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tfnas.errors import TfnasError
from tfnas_base.atomic import atomic_path

_log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter deprecation/tracer warnings and its progress logging."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _export_classic(model: nn.Module, x: torch.Tensor, path: str, opset: int, dynamic_batch: bool) -> None:
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (x,),
        path,
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
    )


def quiet_export(
    model: nn.Module, x: torch.Tensor, path: str | os.PathLike, opset: int, dynamic_axes: dict | None = None
) -> None:
    """The classic exporter on ``x`` with named symbolic axes and no warnings (bundle graphs; unchecked)."""
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamic_axes=dynamic_axes, do_constant_folding=True,
        )  # fmt: skip


def _export_dynamo(model: nn.Module, x: torch.Tensor, path: str, opset: int, dynamic_batch: bool) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(
        model,
        (x,),
        path,
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        # Its op implementations start at opset 18; asking for less triggers a noisy, failing downgrade.
        opset_version=max(opset, 18),
        dynamic_shapes=dynamic_shapes,
        external_data=False,
    )


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, ...],
    opset: int = 17,
    dynamic_batch: bool = False,
) -> Path:
    """Export ``model`` (in eval mode) to ``path`` and validate it with the ONNX checker.

    The graph has one input ``"input"`` of ``input_shape`` (batch dimension
    symbolic with ``dynamic_batch``) and one output ``"output"``. The file is
    written to a temporary name and renamed, so ``path`` is either the old file
    or a complete, checked model.
    """
    import onnx

    path = Path(path)
    errors: list[str] = []
    with atomic_path(path, ".tmp.onnx") as tmp:
        with _eval_mode(model), torch.no_grad(), _quiet():
            x = torch.zeros(input_shape, device=_model_device(model))
            for name, fn in (("torchscript", _export_classic), ("dynamo", _export_dynamo)):
                try:
                    fn(model, x, str(tmp), opset, dynamic_batch)
                    if errors:
                        _log.warning("%s; used the dynamo exporter (opset >= 18) instead", errors[0])
                    break
                except Exception as e:  # exporters raise many types; report all attempts
                    first = (str(e).strip().splitlines() or [""])[0]
                    errors.append(f"{name} exporter: {type(e).__name__}: {first}")
            else:
                raise TfnasError(f"ONNX export to {path} failed: " + "; ".join(errors))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as e:
            raise TfnasError(f"exported ONNX model for {path} fails the ONNX checker: {e}") from None
    return path


def check_parity(
    model: nn.Module,
    onnx_path: str | os.PathLike,
    input_shape: tuple[int, ...],
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Max abs difference of outputs, PyTorch (eval) vs ONNX Runtime (CPU), on a seeded input.

    Raises ``TfnasError`` naming the bound when the difference exceeds ``atol``.
    """
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise TfnasError(f"ONNX model not found: {onnx_path}")
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    with _eval_mode(model), torch.no_grad():
        ref = model(x.to(_model_device(model)))
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise TfnasError(f"ONNX Runtime cannot load {onnx_path}: {e}") from None
    outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    if len(outs) != len(refs):
        raise TfnasError(f"{onnx_path} has {len(outs)} outputs, the PyTorch model {len(refs)}")
    diff = 0.0
    for r, o in zip(refs, outs):
        r_np = r.detach().float().cpu().numpy()
        if r_np.shape != o.shape:
            raise TfnasError(f"{onnx_path}: output shape {o.shape} differs from PyTorch's {r_np.shape}")
        diff = max(diff, float(np.max(np.abs(r_np - o.astype(np.float32)))) if r_np.size else 0.0)
    if not diff <= atol:  # also catches NaN
        raise TfnasError(
            f"ONNX parity check failed for {onnx_path}: max abs difference {diff:.3g} exceeds atol={atol:g}"
        )
    return diff
