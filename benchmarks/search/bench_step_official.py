"""Seconds per TF-NAS search step: the official supernet and ours (independent and shared op weights), side by side.

Issue 22: "the search step in shared mode at most 0.5x the time of the official supernet's step, side by side
in one run". One process builds, in the same setting (ImageNet space, ``--resolution`` px, ``--batch``,
``--threads``, all 8 candidate ops, every op at the search's starting width):

A. the official TF-NAS supernet (https://github.com/AberHu/TF-NAS, ``models/model_search.py``), imported at run
   time from ``--official DIR`` (a checkout or an extracted tree; nothing of it is copied into this repo);
B. our supernet with ``search.op_weights: independent`` (each candidate its own weights, as the official one);
C. our supernet with ``search.op_weights: shared`` (a layer's candidates are views of one superkernel).

and times, interleaved round by round (A, B, C, A, B, C, ... for ``--rounds`` rounds after ``--warmup``
untimed ones), one weight step and one architecture step of each:

- weight step (bi-sampling): a Gumbel path and a random path on the same batch, the two cross-entropy losses
  summed, SGD (lr 0.025, momentum 0.9, wd 1e-5) after clipping the weights' gradient norm to 5;
- architecture step: every op of every layer weighted by Gumbel-softmax weights (temperature 5, the first
  post-warm-up epoch), cross-entropy plus the latency loss ``lambda * |lat / target - 1|``, Adam on the
  architecture parameters after clipping to 5, then the log-alphas renormalised.

For A the two step bodies restate ``train_w_arch`` of the official ``train_search.py`` (which cannot be imported:
it parses its command line and requires CUDA at import/run time) line for line around the official ``Network``,
with the official optimisers' settings. For B and C they are ``TFNASSearch.weight_step`` / ``arch_step``, as
``bench_step.py`` runs them. The official schedule runs an architecture step every 2nd weight step, so the
"search step" figure is ``weight + arch / arch_every`` (``--arch-every``, 2).

Adaptations of the official code, all made at run time here, none in its files:

- only ``models.model_search``, ``tools.config`` (the channel masks: the starting widths) and
  ``parsing_model.get_mc_num_dddict`` are imported; no ``.cuda()``, ``DataParallel`` or cudnn is involved
  (``parsing_model`` sets ``cudnn.benchmark`` at import, which does nothing on a CPU);
- its latency lookup (``latency_pkl/latency_cpu.pkl`` by default) is keyed by the feature-map size at 224 px;
  at another ``--resolution`` the table is wrapped in a dict whose missing keys map to the 224 px key of the
  same block (so that tiny smoke runs work; at 224 px the table is used as is).

Official supernet at its starting widths: each epoch ``train_search.py`` builds ``Network(num_classes,
get_mc_num_dddict(mc_mask_dddict), lat_lookup)``; at the start the masks keep 3x / 6x the input channels
(of 4x / 8x at most). Ours starts at its own starting widths; the JSON records both width lists and whether they
match (``--our-widths official`` sets ours to the official ones should they ever differ).

Run it on a quiet machine: the wall-clock times of a shared machine are inflated; the process CPU times per
step are the steadier figure. OMP_WAIT_POLICY is left to the caller and recorded.

    python benchmarks/search/bench_step_official.py --official /tmp/official_tfnas \\
        --out benchmarks/search/results/step_official.json
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("official", "independent", "shared")
KINDS = ("weight", "arch")
GOAL_RATIO = 0.5  # issue 22: shared search step <= 0.5x the official one


# ---- machine -------------------------------------------------------------------------------------------------
def cpu_info() -> dict[str, Any]:
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cls = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other" if flags else "unknown"
    return {"class": cls, "model": model, "avx512_flags": sorted(f for f in flags if f.startswith("avx512"))}


def official_commit(directory: Path, given: str | None) -> str | None:
    if given:
        return given
    marker = directory / "COMMIT"
    if marker.is_file():
        return marker.read_text().strip() or None
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


# ---- the official supernet -------------------------------------------------------------------------------------
class _ResolutionLUT(dict):
    """The official latency lookup, answering keys at another input size with the 224 px key of the same block.

    Keys read ``MBInvertedResBlock_{size}_{in}_{se}_{out}_k{k}_s{s}_{act}``; the rest after the size names one
    block uniquely in the table, so a missing key's size is replaced by the table's."""

    def __init__(self, table: dict):
        super().__init__(table)
        self._by_rest: dict[str, str] = {}
        for key in table:
            parts = str(key).split("_", 2)
            if len(parts) == 3:
                self._by_rest.setdefault(parts[2], key)

    def __missing__(self, key: str) -> Any:
        parts = str(key).split("_", 2)
        if len(parts) == 3 and parts[2] in self._by_rest:
            return self[self._by_rest[parts[2]]]
        raise KeyError(key)


class OfficialStep:
    """The official ``Network`` and ``train_w_arch``'s two steps (weights every step, architecture every 2nd)."""

    def __init__(self, directory: Path, num_classes: int, resolution: int, lut: Path, args: argparse.Namespace):
        from tfnas.mbv2.official import read_official

        sys.path.insert(0, str(directory))
        # the official code, importable only now
        from models.model_search import PRIMITIVES, MixedOP, Network
        from parsing_model import get_mc_num_dddict
        from tools.config import mc_mask_dddict

        official = read_official(lut)  # the restricted unpickler: plain data only, never arbitrary objects
        table = {"base": official.base, **official.entries}
        self.lat_lookup = table if resolution == 224 else _ResolutionLUT(table)
        mc_num_dddict = get_mc_num_dddict(mc_mask_dddict)  # the starting widths (train_search.py, every epoch)
        torch.manual_seed(args.seed)
        self.model = Network(num_classes, mc_num_dddict, self.lat_lookup)
        self.model.set_temperature(args.temperature)
        self.model.train()
        if args.official_channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.op_names = [p.removeprefix("MBI_") for p in PRIMITIVES]  # 'MBI_k3_e3_se' -> ours 'k3_e3_se'
        self.widths = [[op.mid_channels for op in m.m_ops] for m in self.model.modules() if isinstance(m, MixedOP)]
        self.criterion = nn.CrossEntropyLoss()
        self.grad_clip = 5.0
        self.target_lat, self.lambda_lat = args.official_target_ms, 0.1
        model = self.model
        self.optimizer_w = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=1e-5)
        self.optimizer_a = torch.optim.Adam(model.arch_parameters(), lr=0.01, betas=(0.5, 0.999), weight_decay=5e-4)

    def widths_in_order(self, names: list[str]) -> list[list[int]]:
        """The official starting widths in the op order ``names`` (ours: k3_e3, k3_e3_se, k3_e6, ...)."""
        at = {n: i for i, n in enumerate(self.op_names)}
        return [[ws[at[n]] for n in names] for ws in self.widths]

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        model, criterion = self.model, self.criterion
        for param in model.weight_parameters():
            param.requires_grad = True
        for param in model.arch_parameters():
            param.requires_grad = False
        logits_w_gumbel, _ = model(x, sampling=True, mode="gumbel")
        loss_w_gumbel = criterion(logits_w_gumbel, y)
        logits_w_random, _ = model(x, sampling=True, mode="random")
        loss_w_random = criterion(logits_w_random, y)
        loss_w = loss_w_gumbel + loss_w_random
        self.optimizer_w.zero_grad()
        loss_w.backward()
        nn.utils.clip_grad_norm_(model.weight_parameters(), self.grad_clip)
        self.optimizer_w.step()
        return loss_w.item()

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        model = self.model
        for param in model.weight_parameters():
            param.requires_grad = False
        for param in model.arch_parameters():
            param.requires_grad = True
        logits_a, lat = model(x, sampling=False)
        loss_a = self.criterion(logits_a, y)
        loss_l = torch.abs(lat / self.target_lat - 1.0) * self.lambda_lat
        loss = loss_a + loss_l
        self.optimizer_a.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.arch_parameters(), self.grad_clip)
        self.optimizer_a.step()
        for log_alphas in model.arch_parameters():  # as train_search.py does (the betas included)
            log_alphas.data = F.log_softmax(log_alphas.detach().data, dim=-1)
        return loss_a.item()


# ---- ours --------------------------------------------------------------------------------------------------------
def build_ours(op_weights: str, args: argparse.Namespace, lut: Path, out_dir: str):
    from tfnas.mbv2.search.config import resolve_config
    from tfnas.mbv2.search.searcher import TFNASSearch

    cfg = resolve_config(
        {
            "lut": str(lut),
            "target_ms": args.target_ms,
            "seed": args.seed,
            "data": {
                "source": "generated",
                "resolution": args.resolution,
                "num_classes": args.num_classes,
                "num_samples": 10 * args.batch,  # the held-out split (20%) must hold a batch
            },
            "search": {
                "batch_size": args.batch,
                "epochs": 2,
                "warmup_epochs": 1,
                "arch_every": args.arch_every,
                "temperature": args.temperature,
                "op_weights": op_weights,
            },
            "runtime": {
                "threads": args.threads,
                "channels_last": not args.no_channels_last,
                "progress": False,
                "device": "cpu",
            },
        }
    )
    return TFNASSearch(cfg, out_dir)


def set_widths(search: Any, widths: list[list[int]]) -> None:
    for layer, ws in zip(search.model.layers, widths, strict=True):
        for i, w in enumerate(ws):
            layer.set_width(i, w)
    search._op_table = search.lat.op_table(search.model.widths())


# ---- the run -----------------------------------------------------------------------------------------------------
def summarise(wall: list[float], cpu: list[float]) -> dict[str, Any]:
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu), "wall_all": wall, "cpu_all": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="directory of the official TF-NAS code (a checkout or tree)")
    ap.add_argument("--official-commit", default=None, help="its commit (default: DIR/COMMIT or git rev-parse)")
    ap.add_argument(
        "--official-lut", default=None, help="its latency pickle (default: DIR/latency_pkl/latency_cpu.pkl)"
    )
    ap.add_argument("--official-target-ms", type=float, default=15.0, help="its target_lat (train_search default)")
    ap.add_argument("--official-channels-last", action="store_true", help="run the official model channels-last")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-classes", type=int, default=100, help="the official search's ImageNet-100 subset")
    ap.add_argument("--temperature", type=float, default=5.0)
    ap.add_argument("--arch-every", type=int, default=2)
    ap.add_argument("--target-ms", type=float, default=5.0, help="our target (only the latency loss's value)")
    ap.add_argument("--our-widths", choices=("default", "official"), default="default")
    ap.add_argument("--no-channels-last", action="store_true", help="ours in NCHW (default: channels-last)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--out", default=None, help="write the result JSON here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    root = Path(__file__).resolve().parents[2]
    lut = root / "latency_tables" / "tfnas_imagenet-ort-cpu-avx512-1t-b1-224.json"
    official_dir = Path(args.official).resolve()
    official_lut = Path(args.official_lut) if args.official_lut else official_dir / "latency_pkl" / "latency_cpu.pkl"

    t_build = time.perf_counter()
    ours = {v: build_ours(v, args, lut, f"/tmp/tfnas_bench_step_official_{v}") for v in VARIANTS[1:]}
    official = OfficialStep(official_dir, args.num_classes, args.resolution, official_lut, args)
    our_default_widths = ours["independent"].model.widths()
    official_widths = official.widths_in_order(ours["independent"].model.op_names)
    if args.our_widths == "official":
        for search in ours.values():
            set_widths(search, official_widths)
    torch.set_num_threads(args.threads)
    build_s = time.perf_counter() - t_build

    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    y = torch.randint(0, args.num_classes, (args.batch,))
    x_off = x.to(memory_format=torch.channels_last) if args.official_channels_last else x.contiguous()
    x_ours = {v: x.to(memory_format=s.memory_format) for v, s in ours.items()}

    def steps(variant: str, k: int) -> dict[str, Callable[[], Any]]:
        if variant == "official":
            return {"weight": lambda: official.weight_step(x_off, y), "arch": lambda: official.arch_step(x_off, y)}
        s, xv = ours[variant], x_ours[variant]
        return {
            "weight": lambda: s.weight_step(xv, y, k, warm=False),
            "arch": lambda: s.arch_step(xv, y, k, epoch=1),
        }

    wall = {v: {k: [] for k in KINDS} for v in VARIANTS}
    cpu = {v: {k: [] for k in KINDS} for v in VARIANTS}
    load_before = os.getloadavg()
    t_run = time.perf_counter()
    for r in range(args.warmup + args.rounds):
        for v in VARIANTS:
            for kind, fn in steps(v, r).items():  # gstep = r: our paths vary by round, as the official ones do
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if r >= args.warmup:
                    wall[v][kind].append(dt)
                    cpu[v][kind].append(dc)
        done = r + 1 - args.warmup
        print(f"round {r + 1}/{args.warmup + args.rounds}{'' if done > 0 else ' (warm-up)'}", file=sys.stderr)
    run_s = time.perf_counter() - t_run
    load_after = os.getloadavg()

    results: dict[str, Any] = {}
    for v in VARIANTS:
        res = {k: summarise(wall[v][k], cpu[v][k]) for k in KINDS}
        res["search_step"] = {m: res["weight"][m] + res["arch"][m] / args.arch_every for m in ("wall_s", "cpu_s")}
        results[v] = res
    ratios: dict[str, Any] = {}
    for v in VARIANTS[1:]:
        ratios[v] = {
            part: {m: results[v][part][m] / results["official"][part][m] for m in ("wall_s", "cpu_s")}
            for part in (*KINDS, "search_step")
        }
    shared = ratios["shared"]["search_step"]
    out = {
        "command": [sys.executable, *sys.argv],
        "issue": 22,
        "goal": f"shared search step <= {GOAL_RATIO}x the official one",
        "goal_met": {"wall": shared["wall_s"] <= GOAL_RATIO, "cpu": shared["cpu_s"] <= GOAL_RATIO},
        "setting": {
            "batch": args.batch,
            "resolution": args.resolution,
            "threads": args.threads,
            "num_classes": args.num_classes,
            "ops": len(ours["shared"].model.op_names),
            "arch_every": args.arch_every,
            "temperature": args.temperature,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "order": "interleaved: per round official, independent, shared; weight step then arch step of each",
            "ours_channels_last": not args.no_channels_last,
            "official_channels_last": args.official_channels_last,
            "our_widths": args.our_widths,
            "paths_per_weight_step": list(ours["shared"].paths),
        },
        "official": {
            "dir": str(official_dir),
            "commit": official_commit(official_dir, args.official_commit),
            "lut": str(official_lut),
            "lut_remapped_to_224": args.resolution != 224,
            "target_lat_ms": args.official_target_ms,
        },
        "widths": {  # per searched layer, in our op order (official_own_order: in PRIMITIVES' order)
            "op_names": ours["shared"].model.op_names,
            "official": official_widths,
            "official_own_order": {"op_names": official.op_names, "widths": official.widths},
            "ours_default": our_default_widths,
            "ours_used": ours["shared"].model.widths(),
            "default_match_official": our_default_widths == official_widths,
        },
        "results": results,
        "ratios_vs_official": ratios,
        "build_s": build_s,
        "run_s": run_s,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "<default>"),
        "cpu": cpu_info(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }

    print(f"{'variant':<12} {'weight wall/cpu s':>18} {'arch wall/cpu s':>18} {'search step wall/cpu s':>24}")
    for v in VARIANTS:
        r = results[v]
        cells = [f"{r[p]['wall_s']:.3f}/{r[p]['cpu_s']:.3f}" for p in (*KINDS, "search_step")]
        print(f"{v:<12} {cells[0]:>18} {cells[1]:>18} {cells[2]:>24}")
    print(f"{'ratio':<12} {'weight wall/cpu':>18} {'arch wall/cpu':>18} {'search step wall/cpu':>24}")
    for v in VARIANTS[1:]:
        q = ratios[v]
        cells = [f"{q[p]['wall_s']:.2f}/{q[p]['cpu_s']:.2f}" for p in (*KINDS, "search_step")]
        print(f"{v:<12} {cells[0]:>18} {cells[1]:>18} {cells[2]:>24}")
    print(
        f"goal (shared search step <= {GOAL_RATIO}x official): wall {out['goal_met']['wall']}, "
        f"cpu {out['goal_met']['cpu']}; widths match: {out['widths']['default_match_official']}; "
        f"load {load_before[0]:.2f} -> {load_after[0]:.2f}; cpu {out['cpu']['class']}; "
        f"official {out['official']['commit']}; run {run_s:.0f} s (+ {build_s:.0f} s build)"
    )
    if args.out:
        from tfnas_base.atomic import atomic_write_json

        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
