"""The two training steps of a TF-NAS search, each a function of the supernet, its optimizer and one batch.

* ``weight_step``: the bi-sampled weight update. Every path of the scheme (e.g. a Gumbel path and a second
  path among the ops the first left) is trained on the batch; their losses are summed.
* ``arch_step``: the architecture update on a held-out batch: the mixed (Gumbel-softmax weighted) supernet's
  cross-entropy plus ``lambda * |expected latency / target - 1|``, with the weights frozen.

Randomness: the caller hands each step its own generator (``step_generator``: seeded by the run's seed and the
global step, and reseeding torch's global RNG for dropout), so a resumed run draws exactly what the
uninterrupted one did. ``reduce`` averages gradients over processes (``all_reduce_grads``) before the update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

from tfnas.mbv2.search.config import AUTOCAST_DTYPES, TfnasSearch
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.sampling import draw_paths, gumbel_softmax_weights
from tfnas.mbv2.search.supernet import TFNASSupernet

SEED_MIX = 1_000_003  # spreads (seed, step) pairs: seeds of neighbouring runs never meet at any step

Autocast = Callable[[], contextlib.AbstractContextManager]
Reduce = Callable[[list[torch.nn.Parameter]], None]


def step_generator(seed: int, gstep: int, salt: int = 0) -> torch.Generator:
    """The generator of global step ``gstep`` (salt 0: its weight step, 1: its architecture step).

    torch's global RNG is reseeded with the same number: dropout and any other draw of the step depend
    only on (seed, step), not on what ran before."""
    mixed = (seed * SEED_MIX + gstep) * 4 + salt
    torch.manual_seed(mixed)
    return torch.Generator().manual_seed(mixed)


def gumbel_temperature(search: TfnasSearch, epoch: int) -> float:
    """Gumbel temperature of ``epoch``: ``temperature`` through the warm-up and the first architecture
    epoch, then x ``temperature_decay`` after each architecture epoch (the reference decays only once
    architecture steps run; warm-up steps use the Gumbel argmax, which no temperature changes).
    """
    return search.temperature * search.temperature_decay ** max(0, epoch - search.warmup_epochs)


def autocast_dtype(name: str | None) -> torch.dtype | None:
    """The torch dtype of ``runtime.autocast`` (None: no autocast, fp32)."""
    return getattr(torch, AUTOCAST_DTYPES[name]) if name else None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Autocast:
    """Mixed precision for the network's forwards (``runtime.autocast``; None: fp32); losses stay fp32."""
    if dtype is None:
        return contextlib.nullcontext
    return partial(torch.autocast, device.type, dtype=dtype)


def all_reduce_grads(params: Sequence[torch.nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` over ``world`` processes (one all-reduce of their concatenation)."""
    if world <= 1:
        return
    import torch.distributed as dist

    # every rank draws the same paths (seeded by the step), so the same parameters hold gradients;
    # ops off the paths keep grad None, exactly as in one process (SGD then leaves them untouched)
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    off = 0
    for p in params:
        n = p.numel()
        p.grad = flat[off : off + n].view_as(p)
        off += n


def _no_reduce(params: list[torch.nn.Parameter]) -> None:
    """One process: the gradients are already the batch's."""


def weight_step(
    model: TFNASSupernet,
    opt: torch.optim.Optimizer,
    weights: list[torch.nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    paths: tuple[str, ...],
    gen: torch.Generator,
    *,
    autocast: Autocast = contextlib.nullcontext,
    grad_clip: float | None = None,
    reduce: Reduce = _no_reduce,
) -> dict[str, float]:
    """Train ``weights`` on the batch along the paths the samplers ``paths`` draw (losses summed): one update.

    All paths share the stem features of the batch. Each path backpropagates right after its forward, into a
    detached copy of them, so only one path's activations are alive at a time (half the memory traffic); the
    stem then backpropagates once with the summed gradient: the gradients of summed losses.
    """
    opt.zero_grad(set_to_none=True)
    logits = model.masked_logits().detach().cpu()  # paths are drawn on the CPU generator
    with autocast():
        features = model.stem_features(x)
    shared = features.detach().requires_grad_(True)
    total, correct = 0.0, 0
    for path in draw_paths(paths, logits, gen):
        with autocast():
            out = model.forward_paths(x, path.tolist(), shared)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        total += float(loss.detach())
        correct += int((out.argmax(1) == y).sum())
    features.backward(shared.grad)
    reduce(weights)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(weights, grad_clip)
    opt.step()
    return {"train_loss": total / len(paths), "train_acc": correct / (len(paths) * len(y))}


def arch_step(
    model: TFNASSupernet,
    opt: torch.optim.Optimizer,
    weights: list[torch.nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    *,
    lat: LatencyModel,
    op_table: torch.Tensor,
    temperature: float,
    target_ms: float,
    latency_lambda: float,
    autocast: Autocast = contextlib.nullcontext,
    grad_clip: float | None = None,
    reduce: Reduce = _no_reduce,
) -> dict[str, float]:
    """One update of the architecture parameters on a held-out batch; ``weights`` are frozen meanwhile.

    The reference clips the architecture gradients with the same bound as the weights' (``grad_clip``).
    """
    for p in weights:
        p.requires_grad_(False)
    try:
        opt.zero_grad(set_to_none=True)
        gw = gumbel_softmax_weights(model.masked_logits(), temperature, gen)
        with autocast():
            out = model.forward_mixed(x, gw)
        ce = F.cross_entropy(out.float(), y)
        lat_ms = lat.expected(gw, model.sink_probs(), op_table)
        lat_loss = latency_lambda * (lat_ms / target_ms - 1.0).abs()
        (ce + lat_loss).backward()
        reduce(model.arch_parameters())
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.arch_parameters(), grad_clip)
        opt.step()
        model.normalize_alphas()
    finally:
        for p in weights:
            p.requires_grad_(True)
    return {
        "held_loss": float(ce.detach()),
        "held_acc": float((out.argmax(1) == y).float().mean()),
        "expected_ms": float(lat_ms.detach()),
        "lat_loss": float(lat_loss.detach()),
    }
