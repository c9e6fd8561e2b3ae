"""How fast does the TF-NAS supernet learn with one path per step? (the search-quality investigation)

Trains the supernet of the CIFAR space on a task with a path per weight step: ``fixed`` (one op everywhere),
``alt`` (two whole-network paths alternating) or ``random`` (an op per layer drawn from ``--ops`` each step:
what the reference's warm-up does with uniform architecture weights). Prints the loss and training top-1
every 25 steps, as running means over those steps, and writes them to ``--json``.

    python benchmarks/search/bench_supernet_learning.py --path random --ops 0,2 --bn plain --steps 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tfnas.data import build_datasets, evaluation_loader, make_loader  # noqa: E402
from tfnas.mbv2.search.supernet import TFNASSupernet  # noqa: E402
from tfnas.mbv2.space import load_space  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", choices=("fixed", "alt", "random"), default="random")
    p.add_argument("--ops", default="0,1,2,3,4,5,6,7", help="op indices: the fixed op (first), or the pool to draw")
    p.add_argument("--bn", choices=("plain", "affine"), default="plain")
    p.add_argument("--op-weights", choices=("independent", "shared"), default="independent")
    p.add_argument("--aligned", choices=("auto", "yes", "no"), default="auto", help="aligned start (auto: if shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--data", default="shapes:0.0")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    space = load_space("tfnas_cifar")
    data = build_datasets(args.data, resolution=16, held_out_fraction=0.2, num_samples=4000, seed=0)
    aligned = None if args.aligned == "auto" else args.aligned == "yes"
    torch.manual_seed(args.seed)
    net = TFNASSupernet(space, data.num_classes, bn=args.bn, op_weights=args.op_weights, aligned_start=aligned)
    opt = torch.optim.SGD(net.weight_parameters(), lr=args.lr, momentum=args.momentum, weight_decay=1e-5)
    pool = [int(c) for c in args.ops.split(",")]
    gen = torch.Generator().manual_seed(args.seed)
    loader = make_loader(data.train, 32, shuffle=True, seed=0)
    n_layers, step, t0, rows, acc, loss_sum = space.num_layers(), 0, time.perf_counter(), [], [], []
    while step < args.steps:
        for x, y in loader:
            if args.path == "fixed":
                choice = [pool[0]] * n_layers
            elif args.path == "alt":
                choice = [pool[step % len(pool)]] * n_layers
            else:
                choice = [pool[i] for i in torch.randint(0, len(pool), (n_layers,), generator=gen).tolist()]
            out = net.forward_paths(x, choice)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0)
            opt.step()
            acc.append(float((out.argmax(1) == y).float().mean()))
            loss_sum.append(loss.item())
            step += 1
            if step % 25 == 0:
                row = {"step": step, "loss": sum(loss_sum[-25:]) / 25, "train_acc": sum(acc[-25:]) / 25,
                       "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
                rows.append(row)
                print(row, flush=True)
            if step >= args.steps:
                break
    held = held_out_top1(net, data, pool, n_layers, gen)
    print({"held_out": held}, flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "command": " ".join(sys.argv), "rows": rows, "held_out": held}, indent=1)
        )


@torch.no_grad()
def held_out_top1(net, data, pool, n_layers, gen, paths: int = 4) -> dict:
    """Held-out top-1 (shuffled batches, batch statistics) of the first op everywhere and of random paths."""
    loader = evaluation_loader(data.held_out, 32, seed=0)
    choices = {"first_op": [pool[0]] * n_layers}
    for k in range(paths):
        choices[f"random_{k}"] = [pool[i] for i in torch.randint(0, len(pool), (n_layers,), generator=gen).tolist()]
    out = {}
    for name, choice in choices.items():
        correct = total = 0
        for x, y in loader:
            correct += int((net.forward_paths(x, choice).argmax(1) == y).sum())
            total += len(y)
        out[name] = correct / total
    return out


if __name__ == "__main__":
    main()
