"""Write a built-in task as a user's ImageFolder tree (``root/<class>/<nnnnn>.png``), classes in sorted folders.

A search given ``--data root`` reads it as any user's directory: its held-out split is then class-sorted in index
order (the layout that hid issue 22's evaluation defect, which the built-in tasks, interleaving classes, did not).

    python benchmarks/search/make_image_folder.py --task digits:0.5 --resolution 32 --out /tmp/digits_folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tfnas.data import build_datasets  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digits:0.5")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--num-samples", type=int, default=4000, help="generated tasks only")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from PIL import Image

    data = build_datasets(args.task, resolution=args.resolution, held_out_fraction=0.0, num_samples=args.num_samples)
    root = Path(args.out)
    for i in range(len(data.train)):
        x, y = data.train[i]
        img = x.numpy().transpose(1, 2, 0)
        img = np.clip((img - img.min()) / max(float(img.max() - img.min()), 1e-6) * 255.0, 0, 255).astype(np.uint8)
        folder = root / f"class_{y:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    print(f"{len(data.train)} images in {data.num_classes} class folders under {root}")


if __name__ == "__main__":
    main()
