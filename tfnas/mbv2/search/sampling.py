"""Path samplers of the weight step, and Gumbel-softmax mixing of the architecture step.

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

from collections.abc import Callable

import torch

from tfnas.errors import ConfigError
from tfnas.registry import Registry

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
