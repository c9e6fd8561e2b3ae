"""The DARTS search network: mixed ops on every edge of stacked normal/reduction cells.

Architecture parameters live in one ``ArchParams`` module (so they are saved
with the model but can be optimised separately). Method-specific structure is
expressed through constructor options, not subclasses:

* ``multi_level``: independent alphas per stage (low/mid/high normal cells,
  one reduction cell per reduction) instead of one shared pair;
* ``partial_k``: PC-DARTS partial channels (1/K of the channels through the
  mixed op, the rest bypass it, then a channel shuffle);
* ``edge_norm``: PC-DARTS edge normalisation (softmax over a node's incoming edges);
* ``aux_skip``: DARTS- auxiliary skip on every edge, scaled by ``aux_beta``.

How alphas become op weights (softmax, sigmoid, perturbed ...) is the search
method's business: ``forward`` takes precomputed weights or calls ``normalize``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from tfnas.darts.network import Head, Stem, network_plan, preprocess
from tfnas.darts.ops import POOL_OPS, FactorizedReduce, Identity, build_op, channel_shuffle
from tfnas.darts.shapes import SupernetSection
from tfnas.darts.space import NUM_EDGES, NUM_NODES, CellPlan, CellSpace, node_edge_slices

ArchWeights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SupernetStructure:
    """The supernet options a method sets (``tfnas.darts.methods``)."""

    multi_level: bool = False
    partial_k: int = 1
    edge_norm: bool = False
    aux_skip: bool = False


class MixedOp(nn.Module):
    """Weighted sum of an edge's candidate ops (optionally on 1/K of the channels)."""

    def __init__(self, C: int, stride: int, op_names: tuple[str, ...], partial_k: int = 1, aux_skip: bool = False):
        super().__init__()
        if C % partial_k:
            raise ValueError(f"partial_k={partial_k} must divide C={C}")
        self.op_names = op_names
        self.partial_k = partial_k
        self.stride = stride
        Cp = C // partial_k
        ops = []
        for name in op_names:
            op = build_op(name, Cp, stride, affine=False)
            if name in POOL_OPS:  # pooled features are unnormalised; BN makes them comparable to convs
                op = nn.Sequential(op, nn.BatchNorm2d(Cp, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        # 'none' contributes exactly zero (and zero alpha gradient): skip computing it
        self._active = [i for i, n in enumerate(op_names) if n != "none"]
        self.aux = (FactorizedReduce(Cp, Cp, affine=False) if stride == 2 else Identity()) if aux_skip else None
        self.bypass_pool = nn.MaxPool2d(2, 2) if partial_k > 1 and stride == 2 else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor | list[float], aux_beta: float = 0.0) -> torch.Tensor:
        """``weights``: a tensor when alphas need gradients, else plain floats (``DartsSupernet.forward``)."""
        k = self.partial_k
        if k > 1:
            cp = x.shape[1] // k
            x, rest = x[:, :cp], x[:, cp:]
        out = None
        if isinstance(weights, torch.Tensor) and weights.requires_grad:
            for i in self._active:
                y = self.ops[i](x) * weights[i]
                out = y if out is None else out + y
        else:  # weight step: constant weights, accumulate in place (fewer allocations, no tensor muls)
            ws = weights.tolist() if isinstance(weights, torch.Tensor) else weights
            for i in self._active:
                if out is None:
                    out = self.ops[i](x) * ws[i]
                else:
                    out.add_(self.ops[i](x), alpha=ws[i])
        if out is None:  # an edge whose only candidate is 'none'
            out = self.ops[0](x) * weights[0]
        if self.aux is not None and aux_beta != 0.0:
            out = out + self.aux(x) * aux_beta
        if k > 1:
            if self.bypass_pool is not None:
                rest = self.bypass_pool(rest)
            out = channel_shuffle(torch.cat([out, rest], dim=1), k)
        return out


class SearchCell(nn.Module):
    def __init__(
        self, plan: CellPlan, edge_ops: tuple[tuple[str, ...], ...], partial_k: int = 1, aux_skip: bool = False
    ):
        super().__init__()
        C = plan.C
        self.reduction = plan.reduction
        self.pre0, self.pre1 = preprocess(plan, affine=False)
        self.slices = node_edge_slices()
        self.edges = nn.ModuleList(
            MixedOp(C, plan.edge_stride(e), ops, partial_k, aux_skip) for e, ops in enumerate(edge_ops)
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor | list[list[float]],
        edge_weights: torch.Tensor | list[float] | None = None,
        aux_beta: float = 0.0,
    ) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for sl in self.slices:
            acc = None
            for e, h in zip(range(sl.start, sl.stop), states):
                y = self.edges[e](h, weights[e], aux_beta)
                if edge_weights is not None:
                    y = y * edge_weights[e]
                acc = y if acc is None else acc + y
            states.append(acc)
        return torch.cat(states[-NUM_NODES:], dim=1)


class ArchParams(nn.Module):
    """Alphas (``[sets, edges, ops]``) per cell type, and PC-DARTS edge betas (``[sets, edges]``)."""

    def __init__(self, num_ops: int, normal_sets: int, reduce_sets: int, edge_norm: bool, init_std: float):
        super().__init__()
        self.normal = nn.Parameter(init_std * torch.randn(normal_sets, NUM_EDGES, num_ops))
        self.reduce = nn.Parameter(init_std * torch.randn(reduce_sets, NUM_EDGES, num_ops))
        if edge_norm:
            self.beta_normal = nn.Parameter(init_std * torch.randn(normal_sets, NUM_EDGES))
            self.beta_reduce = nn.Parameter(init_std * torch.randn(reduce_sets, NUM_EDGES))
        else:
            self.beta_normal = self.beta_reduce = None

    def alphas(self) -> dict[str, torch.Tensor]:
        return {"normal": self.normal, "reduce": self.reduce}


def edge_softmax(beta: torch.Tensor) -> torch.Tensor:
    """Softmax of edge betas over each node's incoming edges (last dim = edges)."""
    return torch.cat([torch.softmax(beta[..., sl], dim=-1) for sl in node_edge_slices()], dim=-1)


class DartsSupernet(nn.Module):
    """Stem, searchable cells and head of ``net`` (``tfnas.darts.network`` builds the shared parts)."""

    def __init__(
        self,
        space: CellSpace,
        net: SupernetSection | None = None,
        structure: SupernetStructure | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        net, structure = net or SupernetSection(), structure or SupernetStructure()
        if net.C % structure.partial_k:
            raise ValueError(f"partial_k={structure.partial_k} must divide C={net.C}")
        self.space, self.net, self.structure = space, net, structure
        self.stem = Stem(net, in_channels)
        self.plan = network_plan(net, None)
        cells, index = [], []
        for p in self.plan:
            kind = "reduce" if p.reduction else "normal"
            cells.append(SearchCell(p, space.ops(kind), structure.partial_k, structure.aux_skip))
            index.append((kind, p.alpha_set if structure.multi_level else 0))  # which alpha set this cell reads
        self.cells = nn.ModuleList(cells)
        self.alpha_index = index
        self.head = Head(self.plan[-1].C_out, num_classes)
        sets = (3, 2) if structure.multi_level else (1, 1)
        self.arch = ArchParams(space.num_ops, sets[0], sets[1], structure.edge_norm, net.alpha_init_std)
        self.normalize: Callable[[torch.Tensor], torch.Tensor] = lambda a: torch.softmax(a, dim=-1)
        self.aux_beta = 0.0

    # --- parameters -------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch.parameters())

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch.parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((k, p) for k, p in self.named_parameters() if not k.startswith("arch."))

    # --- weights ----------------------------------------------------------
    def arch_weights(self) -> ArchWeights:
        """Normalised op weights per cell type (and edge weights with edge normalisation)."""
        w = {"normal": self.normalize(self.arch.normal), "reduce": self.normalize(self.arch.reduce)}
        if self.arch.beta_normal is not None:
            w["edge_normal"] = edge_softmax(self.arch.beta_normal)
            w["edge_reduce"] = edge_softmax(self.arch.beta_reduce)
        return w

    def forward(self, x: torch.Tensor, weights: ArchWeights | None = None) -> torch.Tensor:
        if weights is None:
            weights = self.arch_weights()
        if not any(w.requires_grad for w in weights.values()):
            # constant weights (weight steps): to floats once per forward, not once per edge (a device sync each)
            weights = {k: w.tolist() for k, w in weights.items()}
        s0, s1 = self.stem(x)
        for cell, (kind, idx) in zip(self.cells, self.alpha_index):
            edge_w = weights.get(f"edge_{kind}")
            s0, s1 = s1, cell(s0, s1, weights[kind][idx], None if edge_w is None else edge_w[idx], self.aux_beta)
        return self.head(s1)
