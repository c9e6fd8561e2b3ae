"""``tfnas space NAME|PATH``: validate a space file and show its layers and width bounds."""

from __future__ import annotations

import argparse

from tfnas.mbv2.space import available_spaces, load_space


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", nargs="?", help=f"space name ({', '.join(available_spaces())}) or YAML path")
    p.add_argument("--resolution", type=int, default=None, help="show shapes at this resolution")


def run(args: argparse.Namespace) -> int:
    if args.space is None:
        print("available spaces:", ", ".join(available_spaces()))
        return 0
    space = load_space(args.space)
    res = args.resolution or space.resolution
    print(
        f"space {space.name} ({space.source}), {res}x{res}, {space.num_layers()} searchable layers, "
        f"{len(space.ops)} ops: {', '.join(space.ops)}"
    )
    print(
        f"{'stage':>5} {'layer':>5} {'in':>5} {'out':>5} {'stride':>6} {'input':>9} {'act':>6}  width bounds (e3 / e6)"
    )
    for g in space.layers(res):
        bounds = sorted({space.width_bounds(op, g.in_ch) for op in space.ops})
        print(
            f"{g.stage + 1:>5} {g.index + 1:>5} {g.in_ch:>5} {g.out_ch:>5} {g.stride:>6} "
            f"{g.in_size:>4}x{g.in_size:<4} {g.act:>6}  {' / '.join(f'[{lo},{hi}]' for lo, hi in bounds)}"
        )
    return 0
