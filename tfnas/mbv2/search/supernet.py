"""The TF-NAS supernet: mixed layers, op logits (alphas) and sink-connecting depth logits (betas).

Per searchable layer: a ``MixedLayer`` over the space's candidate ops and a row
of op logits, kept as log-probabilities. Per stage: betas over the sink points
(the outputs after layer ``min_depth`` .. ``n``; the stage input is a sink point
when the first layer keeps the shape). A stage's output is the softmax(beta)
mix of its sink points, so depth is searched without a skip op competing with
real ops. Stem, first block and head are the derived network's own modules (the head without
dropout: the reference searches without it). As in the reference supernet every BN, there and in
the candidate ops, has no affine parameters and normalises with batch statistics (``bn="plain"``);
``bn="affine"`` (an option) keeps learnable BNs, with running statistics in the fixed parts.
``op_weights="shared"`` (an option, ``layers.SharedMixedLayer``) makes a layer's candidates views of one superkernel.
"""

from __future__ import annotations

import torch
from torch import nn

from tfnas.errors import ConfigError
from tfnas.mbv2.net import build_first_block, build_head, build_stem
from tfnas.mbv2.search.layers import MixedLayer, SharedMixedLayer, independent_layer
from tfnas.mbv2.space import MBV2Space
from tfnas.registry import Registry

# search.op_weights -> the searchable layer: candidates with their own weights (the reference), or one
# superkernel whose views they are
LAYER_KINDS: Registry[type] = Registry("op weights")
LAYER_KINDS.add("independent", independent_layer)
LAYER_KINDS.add("shared", SharedMixedLayer)


def batch_statistics_only(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d of ``module`` replaced by one without affine parameters or running statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.BatchNorm2d(child.num_features, affine=False, track_running_stats=False))
        else:
            batch_statistics_only(child)
    return module


class TFNASSupernet(nn.Module):
    """Supernet of an ``MBV2Space``; ``forward_paths`` (one op per layer) and ``forward_mixed`` (all ops)."""

    def __init__(
        self,
        space: MBV2Space,
        num_classes: int | None = None,
        ops: list[str] | None = None,
        bn: str = "plain",
        op_weights: str = "independent",
        aligned_start: bool | None = None,
    ):
        """``op_weights``: 'independent' (the reference: each candidate its own weights) or 'shared' (one
        superkernel per layer, ``layers.SharedMixedLayer``). ``aligned_start``: a layer's candidates start as one function
        (None: with shared weights only; independent ones keep the reference's initialisation)."""
        super().__init__()
        if bn not in ("plain", "affine"):
            raise ConfigError(f"supernet bn {bn!r}: choose 'plain' (the reference) or 'affine'")
        make_layer = LAYER_KINDS.get(op_weights)
        self.op_weights = op_weights
        aligned = op_weights == "shared" if aligned_start is None else aligned_start
        self.space = space
        self.op_names = list(space.ops)
        enabled = self.op_names if ops is None else list(ops)
        affine = bn == "affine"
        self.stem = build_stem(space)
        self.first_block = build_first_block(space)
        self.geometry = space.layers()
        layers = []
        for g in self.geometry:
            specs, widths = [], []
            for name in self.op_names:
                spec = space.ops[name]
                specs.append((name, spec.kernel, space.width_bounds(name, g.in_ch)[1], space.se_width(name, g.in_ch)))
                widths.append(space.default_width(name, g.in_ch))
            layers.append(make_layer(g.in_ch, g.out_ch, g.stride, g.act, specs, widths, affine, aligned))
        self.layers = nn.ModuleList(layers)
        # no dropout while searching (as in the reference supernet): the space's head dropout is a
        # regulariser of the derived network's training, and it would add noise to every arch gradient
        self.head = build_head(space, num_classes, dropout=0.0)
        if not affine:
            for part in (self.stem, self.first_block, self.head):
                batch_statistics_only(part)
        self.stage_slices = space.stage_slices()
        self.min_depths = space.min_depths()
        n_layers, n_ops = len(layers), len(self.op_names)
        self.register_buffer("op_mask", self.op_mask_for(space, enabled))
        self.alphas = nn.Parameter(torch.zeros(n_layers, n_ops))
        self.betas = nn.ParameterList(
            nn.Parameter(torch.zeros(st.layers + 1 - md)) for st, md in zip(space.stages, self.min_depths)
        )
        self.normalize_alphas()

    @staticmethod
    def op_mask_for(space: MBV2Space, ops: list[str] | None) -> torch.Tensor:
        """[layers, ops] switches: True where an op is searched (``ops`` None: all)."""
        unknown = [o for o in ops or [] if o not in space.ops]
        if unknown or (ops is not None and not ops):
            raise ConfigError(f"search ops {unknown or ops}: choose a non-empty subset of {', '.join(space.ops)}")
        row = [ops is None or n in ops for n in space.ops]
        return torch.tensor([row] * space.num_layers())

    # ---- architecture parameters ------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas, *self.betas]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def masked_logits(self) -> torch.Tensor:
        """Op logits with disabled ops at -inf (they can never be sampled or weighted)."""
        return self.alphas.masked_fill(~self.op_mask, float("-inf"))

    @torch.no_grad()
    def normalize_alphas(self) -> None:
        """Keep the op logits as log-probabilities over the enabled ops."""
        logp = torch.log_softmax(self.masked_logits(), dim=-1)
        self.alphas.copy_(logp.masked_fill(~self.op_mask, 0.0))

    def op_probs(self) -> torch.Tensor:
        return torch.softmax(self.masked_logits().detach(), dim=-1)

    def sink_probs(self) -> list[torch.Tensor]:
        return [torch.softmax(b, dim=0) for b in self.betas]

    def enabled_ops(self, layer: int) -> list[int]:
        return self.op_mask[layer].nonzero().flatten().tolist()

    def set_mixed_impl(self, impl: str) -> None:
        """How mixed layers compute: 'loop' (op by op) or 'fused' (shared expansion/depthwise convs).
        Shared op weights have one mixed forward (the superkernel), whatever this says."""
        if impl not in ("loop", "fused"):
            raise ConfigError(f"mixed op implementation {impl!r}: choose 'loop' or 'fused'")
        for layer in self.layers:
            if isinstance(layer, MixedLayer):
                layer.impl = impl

    def sync_widths(self) -> None:
        for layer in self.layers:
            layer.sync_widths()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict, assign)
        self.sync_widths()
        return result

    def widths(self) -> list[list[int]]:
        return [list(layer._w) for layer in self.layers]

    # ---- forward ------------------------------------------------------------------------------------------
    def stem_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and first block: shared by every path of a step, so computed once per batch."""
        return self.first_block(self.stem(x))

    def _run(self, x: torch.Tensor, layer_fn, detach_sinks: bool) -> torch.Tensor:
        """Searchable stages (sinks mixed by softmax(beta)) and head, from the stem features ``x``."""
        for s, (a, b) in enumerate(self.stage_slices):
            probs = torch.softmax(self.betas[s], dim=0)
            if detach_sinks:
                probs = probs.detach()
            sinks = [x] if self.min_depths[s] == 0 else []
            for i in range(a, b):
                x = layer_fn(i, x)
                sinks.append(x)
            if len(sinks) == 1:
                x = sinks[0]
            else:
                mixed = sinks[0] * probs[0]
                for p, y in zip(probs[1:], sinks[1:]):
                    mixed = mixed + p * y
                x = mixed
        return self.head(x)

    def forward_paths(self, x: torch.Tensor, choices: list[int], features: torch.Tensor | None = None) -> torch.Tensor:
        """A single path: op ``choices[i]`` in layer ``i``; sinks mixed by softmax(beta) (no beta gradient).

        ``features``: precomputed ``stem_features(x)`` (several paths on one batch share them).
        """
        f = self.stem_features(x) if features is None else features
        return self._run(f, lambda i, h: self.layers[i].forward_single(h, choices[i]), detach_sinks=True)

    def forward_arch(self, x: torch.Tensor, ops: list[int], widths: list[int], depths: list[int]) -> torch.Tensor:
        """One architecture's slice of the supernet: op ``ops[i]`` at ``widths[i]`` in layer ``i``, the first
        ``depths[s]`` layers of stage ``s`` (no sink mixing): what the architecture inherits from the search."""
        h = self.stem_features(x)
        for s, (a, _) in enumerate(self.stage_slices):
            for i in range(a, a + depths[s]):
                h = self.layers[i].forward_single(h, ops[i], widths[i])
        return self.head(h)

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """All enabled ops of every layer, mixed with ``weights`` [layers, ops]; sinks mixed by softmax(beta)."""
        enabled = [self.enabled_ops(i) for i in range(len(self.layers))]
        return self._run(
            self.stem_features(x),
            lambda i, h: self.layers[i].forward_mixed(h, weights[i], enabled[i]),
            detach_sinks=False,
        )

    def forward(self, x: torch.Tensor, choices: list[int] | None = None) -> torch.Tensor:
        if choices is not None:
            return self.forward_paths(x, choices)
        return self.forward_mixed(x, self.op_probs())
