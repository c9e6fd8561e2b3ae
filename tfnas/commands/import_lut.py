"""``tfnas import-lut latency_gpu.pkl --out T.json``: an official TF-NAS latency table as a tfnas table.

The pickle is read without running code (``OrderedDict`` and plain data only), mapped onto the space's op
signatures and written as a schema-2 JSON table of the device it was measured on (never this machine): see
``tfnas/mbv2/official.py`` and ``latency_tables/README.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tfnas.errors import ConfigError, LatencyTableError
from tfnas.latency.table import table_device
from tfnas.mbv2.official import DEVICES, import_official
from tfnas.mbv2.space import load_space


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="official table: latency_gpu.pkl or latency_cpu.pkl of AberHu/TF-NAS")
    p.add_argument("--out", required=True, help="tfnas latency table JSON to write")
    p.add_argument(
        "--device",
        choices=sorted(DEVICES),
        default=None,
        help="the device the pickle was measured on (default: known from the content of the published files)",
    )
    p.add_argument("--space", default="tfnas_imagenet", help="space name or YAML path (the official space)")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="write the entries there are even when the space needs keys or widths the file lacks (complete: false)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: a tfnas latency table is a .json file")
    if out.exists() and not args.force:
        raise ConfigError(f"--out {out} exists; pass --force to replace it")
    space = load_space(args.space)
    command = f"tfnas import-lut {Path(args.source).name}" + (f" --device {args.device}" if args.device else "")
    if args.space != "tfnas_imagenet":
        command += f" --space {args.space}"
    command += f" --out {out.as_posix()}"
    conv = import_official(args.source, space, args.device, command)
    print(f"{args.source}: {conv.table.meta['source']['published_as']}")
    print(conv.summary())
    if not conv.complete and not args.allow_missing:
        raise LatencyTableError(
            f"{args.source} cannot serve every architecture of space {space.name!r}:\n  "
            + "\n  ".join(conv.problems())
            + f"\nnothing written; --allow-missing writes the {len(conv.table)} entries there are"
        )
    conv.table.save(out)
    print(f"wrote {out} ({'complete' if conv.complete else 'INCOMPLETE'}) for the device: {table_device(conv.table)}")
    print("  a foreign device: predict and search use it; measure, calibrate and validate refuse it here")
    return 0
