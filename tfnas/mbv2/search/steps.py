"""The two training steps of a TF-NAS search, each a function of the supernet, its optimizer and one batch,
and the paths they train on.

* ``weight_step``: the bi-sampled weight update. Every path of the scheme (e.g. a Gumbel path and a second
  path among the ops the first left) is trained on the batch; their losses are summed.
* ``arch_step``: the architecture update on a held-out batch: the mixed (Gumbel-softmax weighted) supernet's
  cross-entropy plus ``lambda * |expected latency / target - 1|``, with the weights frozen.

Randomness: the caller hands each step its own generator (``step_generator``: seeded by the run's seed and the
global step, and reseeding torch's global RNG for dropout), so a resumed run draws exactly what the
uninterrupted one did. ``reduce`` averages gradients over processes (``all_reduce_grads``) before the update.

The paths (here too): path samplers of the weight step, and Gumbel-softmax mixing of the architecture step.

A *path sampler* picks one op per layer from masked op logits (disabled ops
are ``-inf`` and can never be picked). A *weight scheme* lists the paths a
weight step trains on the same batch: TF-NAS's bi-sampling is
``gumbel_random`` (one Gumbel path + one uniformly random path); the other
schemes reproduce the paper's ablation of the second path.

As in the reference code, the paths of one step are *distinct per layer*: each
later path draws from the ops the earlier paths of the step left over (the
random path of bi-sampling picks among the other 7 ops, ``max_alpha`` is the
best op other than the Gumbel one, a second Gumbel path is a Gumbel draw over
the remaining ops). Otherwise the second path would repeat the first one's op
with the op's own probability, and the ablation variants would not differ as
the paper describes (``max_alpha`` would mostly retrain the Gumbel op).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

from tfnas.errors import ConfigError
from tfnas.mbv2.search.config import AUTOCAST_DTYPES, TfnasSearch
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.registry import Registry

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


# ---- the paths a step trains on: path samplers and Gumbel-softmax mixing ----
PathSampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
PATH_SAMPLERS: Registry[PathSampler] = Registry("path sampler")
register_sampler = PATH_SAMPLERS.register


def gumbel_noise(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


@register_sampler("gumbel")
def sample_gumbel(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """argmax(logits + Gumbel noise): an exact sample of softmax(logits) per layer."""
    return (logits + gumbel_noise(logits.shape, generator)).argmax(-1)


@register_sampler("random")
def sample_uniform(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform over the enabled ops (the second path of bi-sampling)."""
    allowed = torch.isfinite(logits).to(torch.float64)
    return torch.multinomial(allowed, 1, generator=generator).squeeze(-1)


@register_sampler("max_alpha")
def sample_max_alpha(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return logits.argmax(-1)


@register_sampler("min_alpha")
def sample_min_alpha(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return logits.masked_fill(~torch.isfinite(logits), float("inf")).argmin(-1)


# scheme name -> the paths one weight step runs (losses summed)
WEIGHT_SCHEMES: Registry[tuple[str, ...]] = Registry("sampling scheme")
for _name, _paths in {
    "gumbel": ("gumbel",),
    "random": ("random",),
    "min_alpha": ("gumbel", "min_alpha"),
    "max_alpha": ("gumbel", "max_alpha"),
    "gumbel_gumbel": ("gumbel", "gumbel"),
    "gumbel_random": ("gumbel", "random"),
}.items():
    WEIGHT_SCHEMES.add(_name, _paths)


def weight_paths(scheme: str | list[str]) -> tuple[str, ...]:
    """Resolve a scheme name (or an explicit list of sampler names) to path sampler names."""
    paths = tuple(scheme) if isinstance(scheme, (list, tuple)) else WEIGHT_SCHEMES[scheme]
    if not paths:
        raise ConfigError("an empty list of samplers: give at least one (e.g. [gumbel, random])")
    for p in paths:
        PATH_SAMPLERS.get(p)  # an unknown sampler: the registry's error, with the known names
    return paths


def sample_paths(name: str, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One op index per layer (a LongTensor of shape [layers])."""
    return PATH_SAMPLERS[name](logits.detach(), generator)


def draw_paths(names: tuple[str, ...], logits: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The paths of one weight step, in order; each excludes, per layer, the ops earlier paths took.

    A layer whose enabled ops are all taken already (a one-op search) keeps them all: the path repeats.
    """
    logits = logits.detach()
    taken = torch.zeros_like(logits, dtype=torch.bool)
    out = []
    for name in names:
        free = logits.masked_fill(taken, float("-inf"))
        exhausted = ~torch.isfinite(free).any(-1, keepdim=True)
        choice = PATH_SAMPLERS[name](torch.where(exhausted, logits, free), generator)
        taken[torch.arange(len(choice)), choice] = True
        out.append(choice)
    return out


def gumbel_softmax_weights(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Soft Gumbel-softmax op weights per layer; disabled ops (``-inf``) get exactly 0."""
    g = gumbel_noise(logits.shape, generator).to(logits.device, logits.dtype)
    return torch.softmax((logits + g) / temperature, dim=-1)
