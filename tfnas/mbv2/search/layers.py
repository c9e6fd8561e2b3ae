"""The supernet's searchable layers: elastic inverted-residual candidates and the mixed layer that fuses
them (the published independent ops), and the weight-shared layer whose candidates are views of one kernel.

Every candidate op owns its weights at its width *bound*; it runs at a prefix
width ``w`` by slicing ``[:w]``. Channels are kept sorted by importance
(elastic scaling physically reorders them), so a width change never masks or
re-allocates anything: it only changes a slice length.

The mixed layer runs all enabled candidates (each with its own BNs, as in the
derived network) and sums them with the op weights: op by op ('loop', fastest
on CPU), or 'fused' (one expansion conv and one depthwise conv for all ops).

BN in the supernet always uses batch statistics (no running stats): every
forward of a search is a training-mode forward, and no buffers need to be
reordered or checkpointed when widths change. As in the official supernet its BNs
have no affine parameters (``affine=False``): a learnable scale could rescale an
op's output against its architecture weight. ``affine=True`` (an option) gives
every BN a learnable scale and shift, the last scale of a residual op starting at 0.

Weight-shared candidate ops (``search.op_weights: shared``): one superkernel per searchable layer.

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

import math

import torch
import torch.nn.functional as F
from torch import nn

from tfnas.mbv2.ops import make_act


def batch_stats_bn(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """BN on the batch's statistics (the supernets keep no running statistics)."""
    return F.batch_norm(x, None, None, weight, bias, training=True, momentum=0.0, eps=1e-5)


def sliced(p: torch.Tensor | None, w: int) -> torch.Tensor | None:
    return None if p is None else p[:w]


def default_conv_init(weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """What ``nn.Conv2d`` does to a fresh layer (the official supernet's ops keep it): Kaiming uniform with
    a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias uniform in the same bound."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1.0 / math.sqrt(weight[0].numel())
        nn.init.uniform_(bias, -bound, bound)


class ElasticInvertedResidual(nn.Module):
    """1x1 expand -> kxk depthwise -> (SE) -> 1x1 project, allocated at ``bound`` mid channels.

    ``channel_params`` lists (parameter, dim) pairs whose ``dim`` indexes mid
    channels: elastic scaling permutes exactly these.
    """

    def __init__(
        self, in_ch: int, out_ch: int, bound: int, kernel: int, stride: int, se_ch: int, act: str, affine: bool = False
    ):
        super().__init__()
        self.in_ch, self.out_ch, self.bound = in_ch, out_ch, bound
        self.kernel, self.stride, self.se_ch, self.act, self.affine = kernel, stride, se_ch, act, affine
        self.act_layer = make_act(act)  # on fresh BN outputs: in place
        self.se_act_layer = make_act(act, inplace=False)

        def bn(n: int) -> tuple[nn.Parameter | None, nn.Parameter | None]:
            return (nn.Parameter(torch.ones(n)), nn.Parameter(torch.zeros(n))) if affine else (None, None)

        self.expand = nn.Parameter(torch.empty(bound, in_ch, 1, 1))
        self.bn1_w, self.bn1_b = bn(bound)
        self.dw = nn.Parameter(torch.empty(bound, 1, kernel, kernel))
        self.bn2_w, self.bn2_b = bn(bound)
        if se_ch:
            self.se_reduce = nn.Parameter(torch.empty(se_ch, bound, 1, 1))
            self.se_reduce_b = nn.Parameter(torch.zeros(se_ch))
            self.se_expand = nn.Parameter(torch.empty(bound, se_ch, 1, 1))
            self.se_expand_b = nn.Parameter(torch.zeros(bound))
        self.project = nn.Parameter(torch.empty(out_ch, bound, 1, 1))
        self.bn3_w, self.bn3_b = bn(out_ch)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default conv init, as the official supernet's candidate ops keep it (Kaiming fan-out
        would scale the depthwise and projection weights' effective learning rates under plain BNs)."""
        for p in (self.expand, self.dw, self.project):
            default_conv_init(p)
        if self.se_ch:
            default_conv_init(self.se_reduce, self.se_reduce_b)
            default_conv_init(self.se_expand, self.se_expand_b)

    def channel_params(self) -> list[tuple[nn.Parameter, int]]:
        out = [(self.expand, 0), (self.bn1_w, 0), (self.bn1_b, 0), (self.dw, 0), (self.bn2_w, 0), (self.bn2_b, 0)]
        if self.se_ch:
            out += [(self.se_reduce, 1), (self.se_expand, 0), (self.se_expand_b, 0)]
        out.append((self.project, 1))
        return [(p, dim) for p, dim in out if p is not None]

    def importance(self, width: int | None = None) -> torch.Tensor:
        """L1 norm of each mid channel's depthwise kernel (the channel-keeping criterion)."""
        return self.dw.detach()[: width or self.bound].abs().sum((1, 2, 3))

    def se_and_project(self, h: torch.Tensor, w: int) -> torch.Tensor:
        """SE gate (if any), projection and its BN, on a mid tensor of width ``w``."""
        if self.se_ch:
            s = h.mean((2, 3), keepdim=True)
            s = self.se_act_layer(F.conv2d(s, self.se_reduce[:, :w], self.se_reduce_b))
            s = F.conv2d(s, self.se_expand[:w], self.se_expand_b[:w])
            h = h * torch.sigmoid(s)
        y = F.conv2d(h, self.project[:, :w])
        return batch_stats_bn(y, self.bn3_w, self.bn3_b)

    def forward(self, x: torch.Tensor, w: int) -> torch.Tensor:
        act = self.act_layer
        h = act(batch_stats_bn(F.conv2d(x, self.expand[:w]), sliced(self.bn1_w, w), sliced(self.bn1_b, w)))
        h = F.conv2d(h, self.dw[:w], None, self.stride, self.kernel // 2, 1, w)
        h = act(batch_stats_bn(h, sliced(self.bn2_w, w), sliced(self.bn2_b, w)))
        return self.se_and_project(h, w)


OpSpec = tuple[str, int, int, int]  # a candidate op of a layer: (name, kernel, width bound, se_ch)


class SearchableLayer(nn.Module):
    """What the supernet, elastic scaling and derivation need of a searchable layer, whatever holds its weights:
    per-op mid widths (the ``widths`` buffer, checkpointed, and its python copy ``_w``), ``forward_single``,
    ``forward_mixed``, ``importance(op)``, ``channel_params(op)`` and ``views(op)``.

    ``specs``: per op (name, kernel, width bound, se_ch), in the space's op order; ``widths``: the starting ones.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, specs: list[OpSpec], widths: list[int]):
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.op_names = [s[0] for s in specs]
        self.has_residual = stride == 1 and in_ch == out_ch
        self.register_buffer("widths", torch.tensor(widths, dtype=torch.long))
        self._w = list(widths)

    def sync_widths(self) -> None:
        """Refresh the python copy of the widths buffer (after load_state_dict)."""
        self._w = self.widths.tolist()

    def set_width(self, op: int, width: int) -> None:
        self.widths[op] = width
        self._w[op] = int(width)


class MixedLayer(SearchableLayer):
    """One searchable layer: all candidate ops, their current widths, a single-path and a mixed forward."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        act: str,
        specs: list[OpSpec],
        widths: list[int],
        affine: bool = False,
    ):
        super().__init__(in_ch, out_ch, stride, specs, widths)
        self.ops = nn.ModuleList(
            ElasticInvertedResidual(in_ch, out_ch, bound, k, stride, se, act, affine) for _, k, bound, se in specs
        )
        if self.has_residual and affine:  # residual ops start as identity (the option of learnable BNs)
            for op in self.ops:
                nn.init.zeros_(op.bn3_w)
        kernels = sorted({s[1] for s in specs})
        self.kernel_groups = [(k, [i for i, s in enumerate(specs) if s[1] == k]) for k in kernels]
        self.impl = "loop"

    def views(self, op: int) -> dict[str, torch.Tensor]:
        """Op ``op``'s tensors by name (the shared layer gives the same names for its views)."""
        return {n: p for n, p in self.ops[op].named_parameters()}

    def importance(self, op: int) -> torch.Tensor:
        """Op ``op``'s channel-keeping criterion (the L1 norm of each mid channel's depthwise kernel)."""
        return self.ops[op].importance()

    def channel_params(self, op: int) -> list[tuple[nn.Parameter, int]]:
        """Op ``op``'s tensors and their mid-channel dims: a width change reorders only this op's channels."""
        return self.ops[op].channel_params()

    def forward_single(self, x: torch.Tensor, op: int, width: int | None = None) -> torch.Tensor:
        """Candidate ``op`` at its current width (or ``width``)."""
        y = self.ops[op](x, self._w[op] if width is None else width)
        return x + y if self.has_residual else y

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor, enabled: list[int]) -> torch.Tensor:
        """sum_i weights[i] * op_i(x) over the ``enabled`` ops (``self.impl``: 'loop' or 'fused')."""
        order = [i for _, idx in self.kernel_groups for i in idx if i in enabled]
        out = self._mixed_fused(x, weights, order) if self.impl == "fused" and len(order) > 1 else None
        if out is None:
            ws, ops = self._w, self.ops
            for i in order:
                y = ops[i](x, ws[i]) * weights[i]
                out = y if out is None else out + y
        return x + out if self.has_residual else out

    def _mixed_fused(self, x: torch.Tensor, weights: torch.Tensor, order: list[int]) -> torch.Tensor:
        """The same sum with one expansion conv and one depthwise conv for all ops.

        One 1x1 conv computes every op's expansion, one depthwise conv runs all
        kernels (smaller ones zero-padded to the largest), ``split`` hands each op
        its channels for its SE gate and projection. Fewer, larger kernels suit
        GPUs; on CPU the per-op loop is faster (the split views must be copied
        before each projection: see benchmarks/search/README.md).
        """
        ws, ops = self._w, self.ops
        cat = torch.cat
        act = ops[order[0]].act_layer
        widths = [ws[i] for i in order]
        total = sum(widths)

        def joined(name: str) -> torch.Tensor | None:
            parts = [getattr(ops[i], name) for i in order]
            return None if parts[0] is None else cat([p[: ws[i]] for i, p in zip(order, parts)])

        expand = cat([ops[i].expand[: ws[i]] for i in order])
        h = act(batch_stats_bn(F.conv2d(x, expand), joined("bn1_w"), joined("bn1_b")))
        k = max(ops[i].kernel for i in order)
        dw = cat([_pad_kernel(ops[i].dw[: ws[i]], k) for i in order])
        d = F.conv2d(h, dw, None, self.stride, k // 2, 1, total)
        d = act(batch_stats_bn(d, joined("bn2_w"), joined("bn2_b")))
        out = None
        for i, di in zip(order, d.split(widths, dim=1)):
            y = ops[i].se_and_project(di, ws[i]) * weights[i]
            out = y if out is None else out + y
        return out


def _pad_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    p = (k - w.shape[-1]) // 2
    return F.pad(w, (p, p, p, p)) if p else w


# ---- weight-shared candidates (search.op_weights: shared): views of one superkernel ----
class SharedMixedLayer(SearchableLayer):
    """One searchable layer whose candidates share one set of weights (see the module docstring).

    A ``SearchableLayer``, as the published ``MixedLayer`` is.
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
