"""Weight-shared candidate ops (``search.op_weights: shared``): one superkernel per searchable layer.

The published supernet gives each of a layer's 8 candidates its own weights. Here a layer holds one
expand, one depthwise and one project tensor (and one SE pair) at the largest width bound of its ops,
and a candidate is a *view* of them: a channel prefix ``[:w]`` (its mid width) and the centre ``k x k``
of the depthwise kernel (Single-Path NAS's superkernel, Stamoulis et al. 2019; Once-for-All's elastic
kernel and expansion). Trained single-path, every step then moves weights that every candidate uses.

**Aligned start** (``aligned=True``): every candidate of a layer starts as the same function. The
depthwise ring outside the smallest kernel is zero (a k5 view computes what the k3 view does), the
project columns past the narrowest starting width are zero (a wider view adds nothing yet) and the SE
gate is a constant 0.5 (``se_expand`` zero), which the batch-statistics BN after the projection divides
out. Measured on the CPU budget (``benchmarks/search/README.md``): sharing alone, or the aligned start
alone, does not make the supernet learn; both together learn as fast as one network.

The mixed forward of the architecture step is one superkernel, not 8 ops: the depthwise kernel is the
op-weighted sum of the kernel views, the mid channels are scaled by the op-weighted width masks and
the SE gate is mixed with an identity gate by the SE ops' total weight. With one-hot weights it is
exactly the single-path forward of that op (a test pins it).

Elastic width scaling reorders the shared channels once, for every candidate of the layer (with their
optimiser state); widths stay per candidate, as in the published supernet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tfnas.mbv2.ops import make_act
from tfnas.mbv2.search.elastic_ops import (
    MixedLayer,
    OpSpec,
    SearchableLayer,
    batch_stats_bn,
    default_conv_init,
    sliced,
)


class SharedMixedLayer(SearchableLayer):
    """One searchable layer whose candidates share one set of weights (see the module docstring).

    A ``SearchableLayer``, as the published ``elastic_ops.MixedLayer`` is.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        act: str,
        specs: list[OpSpec],
        widths: list[int],
        affine: bool = False,
        aligned: bool = True,
    ):
        super().__init__(in_ch, out_ch, stride, specs, widths)
        self.act = act
        self.kernels = [s[1] for s in specs]
        self.se_chs = [s[3] for s in specs]
        self.op_bounds = [s[2] for s in specs]
        self.bound = max(self.op_bounds)
        self.kmax = max(self.kernels)
        self.se_max = max(self.se_chs)
        self.affine = affine
        self.act_layer = make_act(act)
        self.se_act_layer = make_act(act, inplace=False)
        b = self.bound

        def bn(n: int) -> tuple[nn.Parameter | None, nn.Parameter | None]:
            return (nn.Parameter(torch.ones(n)), nn.Parameter(torch.zeros(n))) if affine else (None, None)

        self.expand = nn.Parameter(torch.empty(b, in_ch, 1, 1))
        self.bn1_w, self.bn1_b = bn(b)
        self.dw = nn.Parameter(torch.empty(b, 1, self.kmax, self.kmax))
        self.bn2_w, self.bn2_b = bn(b)
        if self.se_max:
            self.se_reduce = nn.Parameter(torch.empty(self.se_max, b, 1, 1))
            self.se_reduce_b = nn.Parameter(torch.zeros(self.se_max))
            self.se_expand = nn.Parameter(torch.empty(b, self.se_max, 1, 1))
            self.se_expand_b = nn.Parameter(torch.zeros(b))
        self.project = nn.Parameter(torch.empty(out_ch, b, 1, 1))
        self.bn3_w, self.bn3_b = bn(out_ch)
        self.register_buffer("kernel_masks", self._kernel_masks())
        self._masks: dict[tuple, tuple] = {}  # forward_mixed's per-(enabled ops, widths) index tensors
        self.impl = "superkernel"  # one mixed forward only: runtime.mixed_op does not apply
        self.reset_parameters(aligned)

    def _kernel_masks(self) -> torch.Tensor:
        """[ops, kmax, kmax]: 1 inside each op's centred kernel view."""
        masks = torch.zeros(len(self.kernels), self.kmax, self.kmax)
        for i, k in enumerate(self.kernels):
            p = (self.kmax - k) // 2
            masks[i, p : p + k, p : p + k] = 1.0
        return masks

    @torch.no_grad()
    def reset_parameters(self, aligned: bool = True) -> None:
        default_conv_init(self.expand)
        default_conv_init(self.dw)
        default_conv_init(self.project)
        if self.se_max:
            default_conv_init(self.se_reduce, self.se_reduce_b)
            default_conv_init(self.se_expand, self.se_expand_b)
        if self.has_residual and self.affine:  # residual ops start as identity (the option of learnable BNs)
            nn.init.zeros_(self.bn3_w)
        if not aligned:
            return
        kmin = min(self.kernels)
        p = (self.kmax - kmin) // 2
        centre = self.dw[:, :, p : p + kmin, p : p + kmin].clone()
        self.dw.zero_()[:, :, p : p + kmin, p : p + kmin] = centre  # every kernel view: the smallest one
        self.project[:, min(self._w) :] = 0.0  # every starting width: the narrowest one
        if self.se_max:  # a constant gate: the BN after the projection divides it out
            self.se_expand.zero_()
            self.se_expand_b.zero_()

    # ---- elastic widths -----------------------------------------------------------------------------------
    def importance(self, op: int) -> torch.Tensor:
        """L1 norm of each shared mid channel's depthwise kernel, as op ``op`` sees it (its centre view)."""
        return (self.dw.detach() * self.kernel_masks[op]).abs().sum((1, 2, 3))

    def channel_params(self, op: int) -> list[tuple[nn.Parameter, int]]:
        """The shared tensors and their mid-channel dims: a reorder moves every candidate's channels."""
        out = [(self.expand, 0), (self.bn1_w, 0), (self.bn1_b, 0), (self.dw, 0), (self.bn2_w, 0), (self.bn2_b, 0)]
        if self.se_max:
            out += [(self.se_reduce, 1), (self.se_expand, 0), (self.se_expand_b, 0)]
        out.append((self.project, 1))
        return [(p, dim) for p, dim in out if p is not None]

    def views(self, op: int) -> dict[str, torch.Tensor]:
        """Op ``op``'s view of the shared tensors at its width bound, named as an independent op's."""
        b = self.op_bounds[op]
        k, p, se = self.kernels[op], (self.kmax - self.kernels[op]) // 2, self.se_chs[op]
        out = {"expand": self.expand[:b], "dw": self.dw[:b, :, p : p + k, p : p + k], "project": self.project[:, :b]}
        for name in ("bn1_w", "bn1_b", "bn2_w", "bn2_b"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)[:b]
        if self.bn3_w is not None:
            out.update(bn3_w=self.bn3_w, bn3_b=self.bn3_b)
        if se:
            out.update(se_reduce=self.se_reduce[:se, :b], se_reduce_b=self.se_reduce_b[:se],
                       se_expand=self.se_expand[:b, :se], se_expand_b=self.se_expand_b[:b])  # fmt: skip
        return out

    # ---- forward ------------------------------------------------------------------------------------------
    def _expand(self, x: torch.Tensor, w: int) -> torch.Tensor:
        h = F.conv2d(x, self.expand[:w])
        return self.act_layer(batch_stats_bn(h, sliced(self.bn1_w, w), sliced(self.bn1_b, w)))

    def _depthwise(self, h: torch.Tensor, kernel: torch.Tensor, w: int) -> torch.Tensor:
        k = kernel.shape[-1]
        d = F.conv2d(h, kernel, None, self.stride, k // 2, 1, w)
        return self.act_layer(batch_stats_bn(d, sliced(self.bn2_w, w), sliced(self.bn2_b, w)))

    def _se_gate(self, h: torch.Tensor, w: int, se: int, hidden_scale: torch.Tensor | None = None) -> torch.Tensor:
        s = h.mean((2, 3), keepdim=True)
        s = self.se_act_layer(F.conv2d(s, self.se_reduce[:se, :w], self.se_reduce_b[:se]))
        if hidden_scale is not None:
            s = s * hidden_scale
        return torch.sigmoid(F.conv2d(s, self.se_expand[:w, :se], self.se_expand_b[:w]))

    def _project(self, x: torch.Tensor, h: torch.Tensor, w: int) -> torch.Tensor:
        y = batch_stats_bn(F.conv2d(h, self.project[:, :w]), self.bn3_w, self.bn3_b)
        return x + y if self.has_residual else y

    def forward_single(self, x: torch.Tensor, op: int, width: int | None = None) -> torch.Tensor:
        """Candidate ``op`` at its current width (or ``width``): a view of the shared weights."""
        w = self._w[op] if width is None else width
        k, p = self.kernels[op], (self.kmax - self.kernels[op]) // 2
        h = self._depthwise(self._expand(x, w), self.dw[:w, :, p : p + k, p : p + k], w)
        se = self.se_chs[op]
        if se:
            h = h * self._se_gate(h, w, se)
        return self._project(x, h, w)

    def _mix_masks(self, enabled: list[int], device: torch.device) -> tuple:
        """(enabled index, [ops, w] width masks, SE-op rows of them, [SE ops, se] hidden masks) of the current
        widths: built once per width change, not every architecture step."""
        key = (tuple(enabled), tuple(self._w), device)
        if key not in self._masks:
            ws, w = self._w, max(self._w[i] for i in enabled)
            idx = torch.tensor(enabled, device=device)
            width_masks = (torch.arange(w)[None, :] < torch.tensor([ws[i] for i in enabled])[:, None]).float()
            se_rows = [j for j, i in enumerate(enabled) if self.se_chs[i]]
            se = max((self.se_chs[enabled[j]] for j in se_rows), default=0)
            se_lim = torch.tensor([self.se_chs[enabled[j]] for j in se_rows])
            hidden = (torch.arange(se)[None, :] < se_lim[:, None]).float()
            self._masks = {key: (idx, width_masks.to(device), torch.tensor(se_rows, device=device),
                                 hidden.to(device))}  # fmt: skip
        return self._masks[key]

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor, enabled: list[int]) -> torch.Tensor:
        """The superkernel of ``sum_i weights[i] * op_i``: one expand, one depthwise, one project conv."""
        idx, width_masks, se_rows, hidden_masks = self._mix_masks(enabled, weights.device)
        w = width_masks.shape[1]
        g = weights[idx]
        h = self._expand(x, w)
        kernel = self.dw[:w] * torch.einsum("o,okl->kl", g, self.kernel_masks[idx])
        h = self._depthwise(h, kernel, w)
        h = h * (g @ width_masks).view(1, -1, 1, 1)  # channel c: the weight of the ops wider than c
        if len(se_rows):
            g_se = g[se_rows]
            hidden = (g_se @ hidden_masks).view(1, -1, 1, 1)
            share = g_se.sum()  # the SE ops' weight: their gate, the others' identity
            h = h * (share * self._se_gate(h, w, hidden_masks.shape[1], hidden) + (1.0 - share))
        return self._project(x, h, w)


def independent_layer(
    in_ch: int, out_ch: int, stride: int, act: str, specs: list[OpSpec], widths: list[int],
    affine: bool = False, aligned: bool = False,
) -> MixedLayer:  # fmt: skip
    """The published layer (every candidate its own weights); ``aligned``: each candidate starts as the shared
    layer's view of it, so all start as one function while their weights stay independent (an ablation)."""
    layer = MixedLayer(in_ch, out_ch, stride, act, specs, widths, affine)
    if aligned:
        copy_views(SharedMixedLayer(in_ch, out_ch, stride, act, specs, widths, affine, True), layer)
    return layer


@torch.no_grad()
def copy_views(source: SharedMixedLayer, layer: MixedLayer) -> None:
    """Every op of ``layer`` set to ``source``'s view of it (same names and shapes)."""
    for op in range(len(layer.ops)):
        theirs = source.views(op)
        for name, p in layer.views(op).items():
            p.copy_(theirs[name])
