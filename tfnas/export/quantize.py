"""INT8 deployment: quantize an exported network statically on the user's data, and say what it costs.

``tfnas export ARCH --precision int8 --calibration-data SOURCE`` exports the fp32 network as usual,
quantizes it with ONNX Runtime's static quantization (``profilers.quantize``: the recipe an INT8
latency table is profiled with, QDQ, per-channel int8 weights, uint8 activations; calibrated on
images of SOURCE instead of generated tensors), and then

- checks the quantized model against the fp32 one on held-out images (the source's test split,
  else a held-out part of its training split): top-1 agreement and the accuracy of both, and
- times both here (interleaved rounds, the latency tables' statistic), so the user sees what
  quantization costs in accuracy and buys (or costs) in latency on this machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from profilers.quantize import QuantSettings, default_settings, quantize_model, quantized_summary
from tfnas.data import build_datasets
from tfnas.errors import TfnasError

DEFAULT_CALIBRATION_SAMPLES = 64
DEFAULT_HELD_OUT = 500


@dataclass(frozen=True)
class Int8Options:
    """How an exported fp32 graph is quantized and checked (``tfnas export --precision int8``'s flags)."""

    calibration_data: str  # 'generated', a CIFAR-10 folder or an ImageFolder tree
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    held_out: int = DEFAULT_HELD_OUT
    num_samples: int = 2000  # size of generated data
    data_seed: int = 0
    reduce_range: bool | None = None  # None: as this machine's ISA asks, like the int8 tables
    rounds: int = 5  # interleaved timing rounds of both models


@dataclass
class QuantData:
    """Calibration images and labelled held-out images (numpy, N x C x H x W, as the network is fed)."""

    calibration: np.ndarray
    held_out: np.ndarray
    labels: np.ndarray
    source: str
    held_out_split: str  # "test" or "held-out part of train"
    num_classes: int


def _stack(dataset: Any, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i in indices:
        x, y = dataset[i]
        xs.append(np.asarray(x, dtype=np.float32))
        ys.append(int(y))
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_quant_data(
    source: str,
    resolution: int,
    num_classes: int | None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    held_out_samples: int = DEFAULT_HELD_OUT,
    num_samples: int = 2000,
    seed: int = 0,
) -> QuantData:
    """Calibration images from the training split of ``source`` (``generated``, a CIFAR-10 or ImageFolder
    folder: ``tfnas.data``), held-out images from its test split (else a held-out 20% of the training split)."""
    if calibration_samples < 1 or held_out_samples < 1:
        raise TfnasError(
            f"--calibration-samples {calibration_samples} / --held-out {held_out_samples}: both must be >= 1"
        )
    data = build_datasets(
        source, resolution=resolution, num_classes=num_classes, held_out_fraction=0.2, num_samples=num_samples,
        seed=seed, augment=False,
    )  # fmt: skip
    evaluation, split = (data.test, "test") if data.test is not None else (data.held_out, "held-out part of train")
    if evaluation is None:
        raise TfnasError(f"data source {source!r} has no held-out images to check the quantized model on")
    rng = random.Random(seed)
    train_idx = list(range(len(data.train)))  # type: ignore[arg-type]
    rng.shuffle(train_idx)
    eval_idx = list(range(len(evaluation)))  # type: ignore[arg-type]
    rng.shuffle(eval_idx)
    calib, _ = _stack(data.train, sorted(train_idx[:calibration_samples]))
    held, labels = _stack(evaluation, sorted(eval_idx[:held_out_samples]))
    return QuantData(calib, held, labels, str(source), split, data.num_classes)


def _batches(x: np.ndarray, batch: int) -> list[np.ndarray]:
    """``x`` in batches of exactly ``batch`` (the exported graph's fixed batch); the last one padded."""
    out = []
    for i in range(0, len(x), batch):
        b = x[i : i + batch]
        if len(b) < batch:
            b = np.concatenate([b, np.repeat(b[-1:], batch - len(b), axis=0)])
        out.append(np.ascontiguousarray(b))
    return out


def quantize_onnx(
    fp32_path: str | Path, out: str | Path, calibration: np.ndarray, batch: int, settings: QuantSettings
) -> Path:
    """Statically quantize the exported graph at ``fp32_path`` into ``out`` with ``calibration`` images."""
    return quantize_model(Path(fp32_path), out, _batches(calibration, batch), settings)


def predict(path: str | Path, images: np.ndarray, batch: int, threads: int = 1) -> np.ndarray:
    """Logits of ``images`` from the ONNX model at ``path`` (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: b})[0] for b in _batches(images, batch)]
    return np.concatenate(outs)[: len(images)]


def agreement(fp32_path: str | Path, int8_path: str | Path, data: QuantData, batch: int) -> dict[str, Any]:
    """Top-1 agreement of the int8 and fp32 models on the held-out images, and the accuracy of each."""
    a = predict(fp32_path, data.held_out, batch)
    b = predict(int8_path, data.held_out, batch)
    pa, pb = a.argmax(1), b.argmax(1)
    return {
        "samples": int(len(pa)),
        "split": data.held_out_split,
        "top1_agreement": float(np.mean(pa == pb)),
        "fp32_accuracy": float(np.mean(pa == data.labels)),
        "int8_accuracy": float(np.mean(pb == data.labels)),
        "chance_accuracy": 1.0 / data.num_classes,
        "max_abs_logit_diff": float(np.max(np.abs(a - b))),
    }


def quantized_report(path: str | Path) -> dict[str, Any]:
    """What the quantized file holds (Q/DQ nodes, int8 weights), for the export report."""
    summary = quantized_summary(path)
    ops = summary["ops"]
    return {
        "quantize_nodes": ops.get("QuantizeLinear", 0),
        "dequantize_nodes": ops.get("DequantizeLinear", 0),
        "ops": ops,
        "initializers": summary["initializers"],
    }


def quantize_export(
    fp32_path: str | Path, out: str | Path, shape: tuple[int, ...], num_classes: int, opts: Int8Options
) -> dict[str, Any]:
    """Quantize the exported graph at ``fp32_path`` into ``out`` on ``opts.calibration_data`` and check it
    against the fp32 graph on held-out images; the export report's int8 part (timing is the caller's)."""
    overrides = {} if opts.reduce_range is None else {"reduce_range": opts.reduce_range}
    settings = default_settings(**overrides, calibration_samples=max(1, opts.calibration_samples))
    data = load_quant_data(
        opts.calibration_data, shape[-1], num_classes, opts.calibration_samples, opts.held_out, opts.num_samples,
        opts.data_seed,
    )  # fmt: skip
    path = quantize_onnx(fp32_path, out, data.calibration, shape[0], settings)
    check = agreement(fp32_path, path, data, shape[0])
    return {
        "onnx": str(path),
        "onnx_fp32": str(fp32_path),
        "precision": "int8",
        "quantization": {**settings.to_dict(), "recipe": settings.describe()},
        "calibration": {"source": data.source, "samples": int(len(data.calibration))},
        "quantized_graph": quantized_report(path),
        "held_out": check,
    }
