"""Evaluation networks built from a DARTS genotype (CIFAR and ImageNet/mobile settings).

Same macro structure as the search network, but every cell keeps only its
derived edges (affine BN), and training adds drop path on non-identity edges
and an auxiliary classifier after the second reduction. Multi-level genotypes
use their per-stage normal cells and per-reduction reduction cells. A node sums
however many inputs its genotype gives it (two for DARTS; one or two for Fair
DARTS, whose nodes without inputs are absent from the cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tfnas.ops.darts_ops import FactorizedReduce, Identity, ReLUConvBN, build_op, drop_path
from tfnas.spaces.darts import NUM_INPUT_NODES, CellPlan, cell_plan, reduction_indices
from tfnas.spaces.darts_genotypes import CellGenotype, Genotype


class EvalCell(nn.Module):
    def __init__(self, cell: CellGenotype, plan: CellPlan):
        super().__init__()
        C = plan.C
        self.reduction = plan.reduction
        self.pre0 = FactorizedReduce(plan.C_pp, C) if plan.reduction_prev else ReLUConvBN(plan.C_pp, C, 1, 1, 0)
        self.pre1 = ReLUConvBN(plan.C_p, C, 1, 1, 0)
        self.sources = [src for _, src in cell.edges]
        self.ops = nn.ModuleList(build_op(op, C, plan.src_stride(src), affine=True) for op, src in cell.edges)
        # per intermediate node, the edge indices that feed it (an empty list: the node is absent)
        targets = cell.targets
        self.node_edges = [
            [e for e, t in enumerate(targets) if t == NUM_INPUT_NODES + i] for i in range(cell.num_nodes)
        ]
        self.concat = list(cell.concat)
        self.multiplier = len(self.concat)
        self._identity = [isinstance(op, Identity) for op in self.ops]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: list[torch.Tensor | None] = [self.pre0(s0), self.pre1(s1)]
        for edges in self.node_edges:
            acc = None
            for e in edges:
                h = self.ops[e](states[self.sources[e]])
                if self.training and drop_prob > 0.0 and not self._identity[e]:
                    h = drop_path(h, drop_prob)
                acc = h if acc is None else acc + h
            states.append(acc)
        return torch.cat([states[i] for i in self.concat], dim=1)


class _AuxPool(nn.Module):
    """The papers' fixed average pool; inputs smaller than its window (tiny proxy runs) pool to 2x2."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.kernel:
            return nn.functional.adaptive_avg_pool2d(x, 2)
        return nn.functional.avg_pool2d(x, self.kernel, self.stride, count_include_pad=False)


class AuxHead(nn.Sequential):
    """Auxiliary classifier on the features after the second reduction.

    ``pool_stride`` 3 for CIFAR (8x8 features at 32x32), 2 for ImageNet (14x14 at 224); the
    adaptive pool makes other resolutions work too. ``final_bn``: the BN(768) after the 2x2 conv,
    in DARTS's CIFAR head but left out of its ImageNet head (the published ImageNet runs trained
    without it).
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int, final_bn: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            _AuxPool(5, pool_stride),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if final_bn else []),
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(768, num_classes),
        )


@dataclass
class EvalNetConfig:
    C: int = 36
    num_cells: int = 20
    num_classes: int = 10
    in_channels: int = 3
    auxiliary: bool = True
    drop_path_prob: float = 0.2
    stem_multiplier: int = 3
    imagenet: bool = False


class DartsEvalNet(nn.Module):
    """Returns logits; in training mode with ``auxiliary`` it returns ``(logits, aux_logits)``."""

    def __init__(self, genotype: Genotype, cfg: EvalNetConfig):
        super().__init__()
        self.genotype, self.cfg = genotype, cfg
        self.drop_path_prob = cfg.drop_path_prob
        C, n = cfg.C, cfg.num_cells
        if cfg.imagenet:
            self.stem0 = nn.Sequential(
                nn.Conv2d(cfg.in_channels, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
            )
        else:
            c_stem = cfg.stem_multiplier * C
            self.stem = nn.Sequential(
                nn.Conv2d(cfg.in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
            )

        def cell_genotype(reduction: bool, alpha_set: int) -> CellGenotype:
            return genotype.reduce_cell(alpha_set) if reduction else genotype.normal_cell(alpha_set)

        self.plan = cell_plan(
            C, n, cfg.stem_multiplier, imagenet_stem=cfg.imagenet, outputs=lambda r, a: len(cell_genotype(r, a).concat)
        )
        cells = [EvalCell(cell_genotype(p.reduction, p.alpha_set), p) for p in self.plan]
        self.aux_index = reduction_indices(n)[1]  # after the second reduction
        C_aux = self.plan[self.aux_index].C_out
        C_p = self.plan[-1].C_out
        self.cells = nn.ModuleList(cells)
        self.aux_head = None
        if cfg.auxiliary:
            self.aux_head = AuxHead(
                C_aux, cfg.num_classes, pool_stride=2 if cfg.imagenet else 3, final_bn=not cfg.imagenet
            )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.imagenet:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        else:
            s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.aux_head is not None and self.training:
                aux = self.aux_head(s1)
        logits = self.classifier(torch.flatten(self.pool(s1), 1))
        return (logits, aux) if aux is not None else logits


def build_eval_net(genotype: Genotype, setting: str = "cifar", **overrides) -> DartsEvalNet:  # noqa: ANN003
    """``setting``: ``cifar`` (C=36, 20 cells) or ``imagenet`` (C=48, 14 cells, mobile setting)."""
    base = {
        "cifar": EvalNetConfig(),
        "imagenet": EvalNetConfig(C=48, num_cells=14, num_classes=1000, drop_path_prob=0.0, imagenet=True),
    }
    if setting not in base:
        raise ValueError(f"setting must be 'cifar' or 'imagenet', got {setting!r}")
    cfg = base[setting]
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    return DartsEvalNet(genotype, cfg)


def count_params_without_aux(model: DartsEvalNet) -> int:
    aux = {id(p) for p in model.aux_head.parameters()} if model.aux_head is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in aux)
