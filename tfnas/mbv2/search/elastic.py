"""Elastic width scaling: move a derived architecture's latency toward the target by its mid widths.

Two per-epoch rules (``ELASTIC_RULES``), both coarse to fine over stage groups (all stages, then
stages 2..N, 3..N, ..., N..N: fewer layers, smaller latency steps):

* ``tfnas`` (the official code's rule): every layer of a group moves by ``round(w / w_min)`` channels
  per step (about one step of the group's narrowest layer), within [bound/2, bound]. Above the target
  the whole network shrinks until it is *below* the target, then the finer groups expand back up
  to it without crossing; below the target every group expands without crossing. The kept channels
  are the top-k by the L1 norm of their depthwise kernels among *all* of the op's channels.
* ``grid`` (ours): steps of ``step`` (10%) of each width, snapped to the table's alignment grid, never
  crossing the target; the kept channels are the active ones ranked by that norm.

``hit_target`` is the final, fine adjustment at derivation: single-layer width
moves picked greedily until the predicted latency is within a tolerance of the
target (falling back to a depth or op change only when widths alone cannot
get there), then every layer grows for free while its latency does not change
(latency is a staircase in width on SIMD runtimes).

``apply_widths`` changes a supernet's widths in place, keeping the channels of
largest depthwise-kernel L1 norm (weights and optimizer state are permuted
consistently, so training just continues).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.registry import Registry


def _step_width(allowed: list[int], w: int, frac: float, direction: int) -> int:
    """The next allowed width about ``frac * w`` away in ``direction`` (at least one grid step)."""
    if direction < 0:
        goal = w * (1.0 - frac)
        i = bisect.bisect_right(allowed, goal) - 1
        i = min(i, bisect.bisect_left(allowed, w) - 1)
        return allowed[max(i, 0)] if allowed[0] < w else w
    goal = w * (1.0 + frac)
    i = bisect.bisect_left(allowed, goal)
    i = max(i, bisect.bisect_right(allowed, w))
    return allowed[min(i, len(allowed) - 1)] if allowed[-1] > w else w


def active_layers(lat: LatencyModel, depths: Sequence[int], first_stage: int = 0) -> list[int]:
    return [i for s, (a, b) in enumerate(lat.stage_slices) if s >= first_stage for i in range(a, a + depths[s])]


def snap_widths(lat: LatencyModel, ops: Sequence[int], widths: Sequence[int]) -> list[int]:
    """Each width moved to the nearest allowed width (not above it, unless below the grid)."""
    out = []
    for i, (o, w) in enumerate(zip(ops, widths)):
        allowed = lat.allowed_widths(i, o)
        j = bisect.bisect_right(allowed, w) - 1
        out.append(allowed[max(j, 0)])
    return out


def _official_group_step(
    lat: LatencyModel, ops: Sequence[int], widths: list[int], depths: Sequence[int], group: list[int], target_ms: float,
    sign: int,
) -> list[int]:  # fmt: skip
    """One of the reference's fits over ``group``: grow (sign +1) while the latency stays at most the target,
    or shrink (sign -1) until it falls below it; each layer moves ``round(w / min w)`` channels a step."""
    if not group:
        return widths
    w_min = min(widths[i] for i in group)
    ratio = {i: int(round(widths[i] / w_min)) for i in group}
    bounds = {i: lat.space.width_bounds(lat.op_names[ops[i]], lat.geometry[i].in_ch) for i in group}
    movable = {i: True for i in group}
    cur, new = list(widths), list(widths)
    new_ms = lat.arch_ms(ops, new, depths)
    while any(movable.values()) and sign * new_ms <= sign * target_ms:
        cur = list(new)
        for i in group:
            lo, hi = bounds[i]
            w = cur[i] + sign * ratio[i]
            new[i] = min(max(w, lo), hi)
            movable[i] = lo < w < hi
        new_ms = lat.arch_ms(ops, new, depths)
    return new if sign < 0 else cur


def scale_widths_official(
    lat: LatencyModel, ops: Sequence[int], widths: Sequence[int], depths: Sequence[int], target_ms: float
) -> list[int]:
    """The reference's per-epoch width scaling (``ELASTIC_RULES['tfnas']``)."""
    cur = list(widths)
    groups = [active_layers(lat, depths, first) for first in range(len(lat.stage_slices))]
    now = lat.arch_ms(ops, cur, depths)
    if now == target_ms:
        return cur
    cur = _official_group_step(lat, ops, cur, depths, groups[0], target_ms, -1 if now > target_ms else 1)
    for group in groups[1:]:
        cur = _official_group_step(lat, ops, cur, depths, group, target_ms, 1)
    return cur


def scale_widths(
    lat: LatencyModel,
    ops: Sequence[int],
    widths: Sequence[int],
    depths: Sequence[int],
    target_ms: float,
    step: float = 0.1,
) -> list[int]:
    """Coarse-to-fine width scaling of the active layers toward ``target_ms`` without crossing it."""
    cur = snap_widths(lat, ops, widths)
    now = lat.arch_ms(ops, cur, depths)
    direction = -1 if now > target_ms else 1
    for first in range(len(lat.stage_slices)):
        group = active_layers(lat, depths, first)
        if not group:
            continue
        while True:
            trial = list(cur)
            for i in group:
                trial[i] = _step_width(lat.allowed_widths(i, ops[i]), cur[i], step, direction)
            if trial == cur:
                break
            new = lat.arch_ms(ops, trial, depths)
            if (new - target_ms) * direction > 0:  # would cross the target: a finer group takes over
                break
            cur, now = trial, new
    return cur


def fit_widths(
    lat: LatencyModel,
    ops: Sequence[int],
    widths: Sequence[int],
    depths: Sequence[int],
    target_ms: float,
    tolerance: float = 0.003,
    max_moves: int = 200,
) -> list[int]:
    """Greedy single-layer width moves (the one landing closest to the target first) until within tolerance."""
    cur = snap_widths(lat, ops, widths)
    layers = active_layers(lat, depths)
    now = lat.arch_ms(ops, cur, depths)
    per_layer = {i: {w: lat.op_cost(i, ops[i], w) for w in lat.allowed_widths(i, ops[i])} for i in layers}
    for _ in range(max_moves):
        err = now - target_ms
        if abs(err) <= tolerance * target_ms:
            break
        best = (abs(err), None, None)
        for i in layers:
            base = per_layer[i][cur[i]]
            for w, ms in per_layer[i].items():
                e = abs(err + ms - base)
                if e < best[0] - 1e-12:
                    best = (e, i, w)
        if best[1] is None:
            break
        cur[best[1]] = best[2]
        now = lat.arch_ms(ops, cur, depths)
    return cur


def grow_free(lat: LatencyModel, ops: Sequence[int], widths: Sequence[int], depths: Sequence[int]) -> list[int]:
    """Widen each active layer as far as its cost stays the same (a staircase is flat in steps).

    Weight streaming is charged on the width the runtime pads to, so growing up to
    the padded width is free in the network too, and growing past it is not.
    """
    cur = list(widths)
    for i in active_layers(lat, depths):
        base = lat.op_cost(i, ops[i], cur[i])
        for w in lat.allowed_widths(i, ops[i]):
            if w > cur[i] and lat.op_cost(i, ops[i], w) <= base:
                cur[i] = w
    return cur


def _reach(lat: LatencyModel, ops: Sequence[int], depths: Sequence[int]) -> tuple[float, float]:
    """Calibrated (min, max) latency over widths for fixed ops and depths."""
    lo = hi = lat.fixed_cost
    for i in active_layers(lat, depths):
        a, b = lat.cost_range(i, ops[i])
        lo, hi = lo + a, hi + b
    return lo, hi


def hit_target(
    lat: LatencyModel,
    ops: Sequence[int],
    widths: Sequence[int],
    depths: Sequence[int],
    target_ms: float,
    tolerance: float = 0.003,
    op_logp: torch.Tensor | None = None,
    sink_logp: Sequence[torch.Tensor] | None = None,
    op_widths: Sequence[Sequence[int]] | None = None,
    max_structural: int = 12,
) -> tuple[list[int], list[int], list[int], list[str]]:
    """Make a derived architecture's predicted latency land within ``tolerance`` of the target.

    Widths first (``fit_widths``). Only when the widths alone cannot reach the
    target (all at a bound: a short search whose latency loss has not converged)
    the depth of a stage or the op of a layer changes, one move at a time,
    picking among the moves that make the target reachable by widths the one
    the search found most probable (``op_logp``/``sink_logp``). Then the free
    growth of ``grow_free``. Returns (ops, widths, depths, moves made).
    """
    ops, depths = list(ops), list(depths)
    n_ops = len(lat.op_names)
    allowed = op_logp is None or torch.isfinite(op_logp)
    wide = [list(r) for r in op_widths] if op_widths is not None else None
    cur = fit_widths(lat, ops, widths, depths, target_ms, tolerance)
    moves: list[str] = []
    for _ in range(max_structural):
        if abs(lat.arch_ms(ops, cur, depths) / target_ms - 1) <= tolerance:
            break
        cands = []  # (distance of target to reachable range, -log-prob, description, ops, widths, depths)
        for s, (a, b) in enumerate(lat.stage_slices):
            for d in (depths[s] - 1, depths[s] + 1):
                if lat.min_depths[s] <= d <= b - a:
                    nd = depths[:s] + [d] + depths[s + 1 :]
                    lp = float(sink_logp[s][d - lat.min_depths[s]]) if sink_logp is not None else 0.0
                    cands.append((nd, ops, cur, lp, f"stage {s + 1} depth {depths[s]} -> {d}"))
        for i in active_layers(lat, depths):
            for j in range(n_ops):
                if j == ops[i] or (op_logp is not None and not bool(allowed[i, j])):
                    continue
                no = ops[:i] + [j] + ops[i + 1 :]
                nw = list(cur)
                nw[i] = wide[i][j] if wide is not None else cur[i]
                nw = snap_widths(lat, no, nw)
                lp = float(op_logp[i, j]) if op_logp is not None else 0.0
                cands.append((depths, no, nw, lp, f"layer {i} op {lat.op_names[ops[i]]} -> {lat.op_names[j]}"))
        scored = []
        for nd, no, nw, lp, text in cands:
            lo, hi = _reach(lat, no, nd)
            dist = max(lo - target_ms, target_ms - hi, 0.0)
            scored.append((dist, -lp, text, no, nw, nd))
        if not scored:
            break
        dist, _, text, ops, cur, depths = min(scored, key=lambda t: (t[0], t[1]))
        ops, cur, depths = list(ops), list(cur), list(depths)
        moves.append(text)
        cur = fit_widths(lat, ops, cur, depths, target_ms, tolerance)
    return ops, grow_free(lat, ops, cur, depths), depths, moves


@torch.no_grad()
def keep_order(importance: torch.Tensor, width: int, among: str = "active") -> torch.Tensor:
    """Channel permutation; the first ``new width`` channels are the ones kept.

    ``among="active"``: the current channels by importance (desc), then the inactive ones by importance;
    ``"all"`` (the reference): every channel by importance, active or not.
    """
    if among == "all":
        return torch.argsort(importance, descending=True, stable=True)
    n = importance.numel()
    active = torch.argsort(importance[:width], descending=True, stable=True)
    inactive = width + torch.argsort(importance[width:], descending=True, stable=True)
    return torch.cat([active, inactive]) if width < n else active


@torch.no_grad()
def apply_widths(
    model: TFNASSupernet,
    ops: Sequence[int],
    widths: Sequence[int],
    optimizer: torch.optim.Optimizer | None = None,
    among: str = "active",
) -> int:
    """Set the width of op ``ops[i]`` of layer ``i`` to ``widths[i]`` where it changed; return how many changed.

    Channels are reordered so the kept ones (largest depthwise L1 norm, ``keep_order(among=...)``) come
    first; optimizer state tensors shaped like a parameter follow the same permutation. With shared op
    weights the reorder moves the layer's shared tensors: once, for every candidate.
    """
    changed = 0
    for i, (o, w) in enumerate(zip(ops, widths)):
        layer = model.layers[i]
        old = layer._w[o]
        if w == old:
            continue
        importance = layer.importance(o)
        perm = keep_order(importance, old, among).to(importance.device)
        for p, dim in layer.channel_params(o):
            p.copy_(p.index_select(dim, perm))
            if optimizer is not None:
                for v in optimizer.state.get(p, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        v.copy_(v.index_select(dim, perm))
        layer.set_width(o, int(w))
        changed += 1
    return changed


def derive_choice(model: TFNASSupernet) -> tuple[list[int], list[int], list[int]]:
    """(ops, widths, depths) of the current architecture: argmax op logit, its width, argmax sink."""
    ops = model.masked_logits().detach().argmax(-1).tolist()
    widths = [layer._w[o] for layer, o in zip(model.layers, ops)]
    depths = [md + int(torch.argmax(b.detach())) for md, b in zip(model.min_depths, model.betas)]
    return ops, widths, depths


@dataclass(frozen=True)
class ElasticRule:
    scale: Callable[..., list[int]]  # (lat, ops, widths, depths, target_ms, step) -> new widths
    keep_among: str  # keep_order's ``among``


ELASTIC_RULES: Registry[ElasticRule] = Registry("elastic rule")  # search.elastic_rule picks one
ELASTIC_RULES.add("tfnas", ElasticRule(lambda lat, o, w, d, t, step: scale_widths_official(lat, o, w, d, t), "all"))
ELASTIC_RULES.add("grid", ElasticRule(scale_widths, "active"))
