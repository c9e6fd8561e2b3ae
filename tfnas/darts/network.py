"""The one builder of DARTS macro networks: stem, cell preprocessing, cells and head from the cell plan.

The search supernet (``tfnas.darts.supernet``), the evaluation network (here) and the latency
bundle (``tfnas.darts.latency``) all take their stem, preprocessing and head from the functions
below and their cell shapes from ``tfnas.darts.space.cell_plan``, so the three cannot disagree.

Evaluation networks keep only a genotype's edges (affine BN), add drop path on non-identity
edges and an auxiliary classifier after the second reduction. Multi-level genotypes use their
per-stage normal cells and per-reduction reduction cells. A node sums however many inputs its
genotype gives it (two for DARTS; one or two for Fair DARTS, whose nodes without inputs are
absent from the cell).
"""

from __future__ import annotations

import torch
from torch import nn

from tfnas.config.loader import validate
from tfnas.darts.ops import FactorizedReduce, Identity, ReLUConvBN, build_op, drop_path
from tfnas.darts.shapes import SETTINGS, CellNet, DartsNet
from tfnas.darts.space import NUM_INPUT_NODES, CellGenotype, CellPlan, Genotype, cell_plan, reduction_indices


# ---- the shared parts -----------------------------------------------------------------------------------------
class Stem(nn.Module):
    """Returns the first two cell inputs ``(s0, s1)``.

    CIFAR: one 3x3 conv to ``stem_multiplier * C`` channels + BN, feeding both inputs. ImageNet (mobile
    setting): two stride-2 convs to ``C`` channels (s0), then a third (s1): the input shrinks 8x.
    """

    def __init__(self, net: CellNet, in_channels: int = 3, imagenet: bool = False):
        super().__init__()
        self.imagenet = imagenet
        C = net.C
        if imagenet:
            self.body = nn.Sequential(
                nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.second = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
            )
        else:
            c_stem = net.stem_multiplier * C
            self.body = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.body(x)
        return (s0, self.second(s0)) if self.imagenet else (s0, s0)


def preprocess(plan: CellPlan, affine: bool = True) -> tuple[nn.Module, nn.Module]:
    """A cell's two input adapters: the first input halves when it comes from before a reduction."""
    pre0 = (
        FactorizedReduce(plan.C_pp, plan.C, affine)
        if plan.reduction_prev
        else ReLUConvBN(plan.C_pp, plan.C, 1, 1, 0, affine)
    )
    return pre0, ReLUConvBN(plan.C_p, plan.C, 1, 1, 0, affine)


class Head(nn.Sequential):
    """Global average pool and the classifier."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def network_plan(net: CellNet, resolution: int | None, genotype: Genotype | None = None, imagenet: bool = False):
    """The cells of ``net`` (concatenation sizes from ``genotype``; all nodes without one)."""
    outputs = genotype.outputs if genotype is not None else None
    return cell_plan(net.C, net.num_cells, net.stem_multiplier, resolution, imagenet_stem=imagenet, outputs=outputs)


# ---- evaluation networks --------------------------------------------------------------------------------------
class EvalCell(nn.Module):
    def __init__(self, cell: CellGenotype, plan: CellPlan):
        super().__init__()
        self.reduction = plan.reduction
        self.pre0, self.pre1 = preprocess(plan)
        self.sources = [src for _, src in cell.edges]
        self.ops = nn.ModuleList(build_op(op, plan.C, plan.src_stride(src), affine=True) for op, src in cell.edges)
        # per intermediate node, the edge indices that feed it (an empty list: the node is absent)
        targets = cell.targets
        self.node_edges = [
            [e for e, t in enumerate(targets) if t == NUM_INPUT_NODES + i] for i in range(cell.num_nodes)
        ]
        self.concat = list(cell.concat)
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


class DartsEvalNet(nn.Module):
    """Returns logits; in training mode with ``auxiliary`` it returns ``(logits, aux_logits)``."""

    def __init__(self, genotype: Genotype, net: DartsNet, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.genotype, self.net = genotype, net
        self.num_classes, self.in_channels = num_classes, in_channels
        self.drop_path_prob = net.drop_path_prob
        imagenet = net.stem == "imagenet"
        self.stem = Stem(net, in_channels, imagenet)
        self.plan = network_plan(net, None, genotype, imagenet)
        self.cells = nn.ModuleList(EvalCell(genotype.cell(p.reduction, p.alpha_set), p) for p in self.plan)
        self.aux_index = reduction_indices(net.num_cells)[1]  # after the second reduction
        self.aux_head = None
        if net.auxiliary:
            C_aux = self.plan[self.aux_index].C_out
            self.aux_head = AuxHead(C_aux, num_classes, pool_stride=2 if imagenet else 3, final_bn=not imagenet)
        self.head = Head(self.plan[-1].C_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.aux_head is not None and self.training:
                aux = self.aux_head(s1)
        logits = self.head(s1)
        return (logits, aux) if aux is not None else logits


def build_eval_net(
    genotype: Genotype, setting: str = "cifar", num_classes: int | None = None, in_channels: int = 3, **net: object
) -> DartsEvalNet:
    """The evaluation network of ``setting`` (``SETTINGS``: cifar C=36, 20 cells; imagenet C=48, 14 cells,
    mobile setting) with ``net`` overrides (``C``, ``num_cells``, ``auxiliary``, ...); ``num_classes``
    defaults to the setting's dataset (10 / 1000)."""
    defaults = SETTINGS[setting]["net"]  # an unknown setting: the registry's error names the choices
    spec = validate(DartsNet, {**defaults, **{k: v for k, v in net.items() if v is not None}},
                    f"<DARTS {setting} network>")  # fmt: skip
    classes = num_classes or (1000 if spec.stem == "imagenet" else 10)
    return DartsEvalNet(genotype, spec, classes, in_channels)


def count_params_without_aux(model: DartsEvalNet) -> int:
    aux = {id(p) for p in model.aux_head.parameters()} if model.aux_head is not None else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in aux)
