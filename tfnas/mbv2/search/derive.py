"""From the supernet's parameters to an architecture: each epoch's snapshot, its width scaling, the final choice.

* ``epoch_snapshot``: the architecture the supernet favours now (argmax op per layer, its width, argmax sink
  per stage) and its latencies: what the search history records after every epoch.
* ``rescale_widths``: the epoch end's elastic step: the configured rule (``ELASTIC_RULES``) moves the favoured
  architecture's widths toward the target and the supernet keeps the channels the rule ranks highest.
* ``final_choice``: the favoured architecture moved onto the latency target (``hit_target``), widths first,
  ops or depths only where widths cannot get there, guided by the supernet's log-probabilities (``arch_prior``).
* ``held_out_accuracy``: how well the supernet (or the derived architecture's slice of it) classifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from tfnas.mbv2.search.elastic import ELASTIC_RULES, apply_widths, derive_choice, hit_target
from tfnas.mbv2.search.latency import LatencyModel
from tfnas.mbv2.search.steps import Autocast
from tfnas.mbv2.search.supernet import TFNASSupernet

Choice = tuple[list[int], list[int], list[int]]  # (ops, widths, depths): one op index and width per layer
Prior = tuple[torch.Tensor, list[torch.Tensor], list[list[int]]]  # (op log-probs, sink log-probs, widths)


def epoch_snapshot(model: TFNASSupernet, lat: LatencyModel, op_table: torch.Tensor) -> tuple[Choice, dict[str, Any]]:
    """The favoured architecture and its history fields: expected (supernet) and derived latency, the op and
    sink probabilities, the depths and op names (``scaled_ms`` stays None until an elastic step fills it)."""
    ops, widths, depths = derive_choice(model)
    with torch.no_grad():
        expected = float(lat.expected(model.op_probs(), model.sink_probs(), op_table))
    derived = lat.arch_ms(ops, widths, depths)
    fields = {
        "expected_ms": expected,
        "derived_ms": derived,
        "scaled_ms": None,
        "op_probs": model.op_probs().tolist(),
        "sink_probs": [p.detach().tolist() for p in model.sink_probs()],
        "depths": depths,
        "ops": [model.op_names[o] for o in ops],
    }
    return (ops, widths, depths), fields


def rescale_widths(
    model: TFNASSupernet,
    lat: LatencyModel,
    choice: Choice,
    target_ms: float,
    rule: str,
    step: float,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[int, float]:
    """Scale the supernet's widths of the ops in ``choice`` by the elastic ``rule`` toward ``target_ms``:
    (how many layers changed width, the predicted latency of the rescaled choice). The kept channels carry
    their weights and ``optimizer`` state along, so training just continues."""
    ops, widths, depths = choice
    elastic = ELASTIC_RULES[rule]
    new = elastic.scale(lat, ops, widths, depths, target_ms, step)
    changed = apply_widths(model, ops, new, optimizer, elastic.keep_among)
    return changed, lat.arch_ms(ops, new, depths)


def chosen_widths(model: TFNASSupernet, ops: list[int]) -> list[int]:
    """The supernet's current width of each layer's op in ``ops``."""
    return [model.layers[i]._w[o] for i, o in enumerate(ops)]


@torch.no_grad()
def arch_prior(model: TFNASSupernet) -> Prior:
    """The supernet's preferences that guide moves onto the target: op and sink log-probabilities, widths."""
    op_logp = torch.log_softmax(model.masked_logits(), -1).cpu()
    sink_logp = [torch.log_softmax(b, 0).cpu() for b in model.betas]
    return op_logp, sink_logp, model.widths()


def final_choice(
    model: TFNASSupernet, lat: LatencyModel, target_ms: float, tolerance: float
) -> tuple[Choice, list[dict[str, Any]], Prior]:
    """The favoured architecture moved within ``tolerance`` of ``target_ms`` (predicted): (choice, the
    structural moves made, the prior that guided them)."""
    ops, widths, depths = derive_choice(model)
    prior = arch_prior(model)
    ops, widths, depths, moves = hit_target(lat, ops, widths, depths, target_ms, tolerance, *prior)
    return (ops, widths, depths), moves, prior


@torch.no_grad()
def held_out_accuracy(
    model: TFNASSupernet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    to: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    autocast: Autocast,
    arch: Choice | None = None,
) -> float:
    """Top-1 over ``batches`` (moved by ``to``) of the supernet's most probable path (sinks mixed), or of
    ``arch``'s slice of the supernet. BN uses batch statistics, as the search trains; the batches must mix
    classes (a class-sorted batch would normalise the signal away)."""
    ops = derive_choice(model)[0]
    correct = total = 0
    for x, y in batches:
        x, y = to(x, y)
        with autocast():
            out = model.forward_paths(x, ops) if arch is None else model.forward_arch(x, *arch)
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)
