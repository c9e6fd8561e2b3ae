"""The TF-NAS search run: warm-up, bi-sampled weight steps, mixed architecture steps, elastic width scaling
after each epoch, derivation to an exact latency target, all in ``out_dir`` with checkpoints and resume.

``TFNASSearch`` coordinates parts that each stand alone: the data order (``batches``), the weight and
architecture steps (``steps``), the derivation and per-epoch width scaling (``derive``), the measured closed
loop (``measured``) and the report (``report``).

Reproducibility: every random draw of a step (paths, Gumbel noise, dropout)
comes from a generator seeded by (seed, global step), and the data order of an
epoch depends only on (seed, epoch). A checkpoint therefore only needs the
model (weights, logits, widths), the optimizers and the position; ``resume``
continues exactly where the interrupted run was, and gives the same result.

Multi-process (torchrun): every rank draws the same paths, sees its own shard
of each batch, and gradients are averaged by all-reduce before each update,
so the single-process CPU path and the DDP path run the same algorithm.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tfnas.data import evaluation_loader
from tfnas.errors import ConfigError, TfnasError
from tfnas.latency.table import require_this_device
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.search import derive as derivation
from tfnas.mbv2.search import steps
from tfnas.mbv2.search.build import SearchBatches, build_latency_model, check_target, plan_steps, search_data
from tfnas.mbv2.search.config import TfnasSearchConfig, resolve_config
from tfnas.mbv2.search.derive import plot_history, search_report, write_report
from tfnas.mbv2.search.measured import measured_loop, table_measurer
from tfnas.mbv2.search.steps import weight_paths
from tfnas.mbv2.search.supernet import TFNASSupernet
from tfnas.mbv2.space import load_space
from tfnas.train.common import RunLoop, build_lr_schedule, build_optimizer, progress, set_lr
from tfnas.utils.memory_format import apply_memory_format


class SearchInterrupted(TfnasError):
    """The run stopped early on request (``runtime.stop_after_steps``); resume continues it."""


@dataclass
class _StepBudget:
    """``runtime.stop_after_steps``: how many steps this call may run (None: all), and how many it has."""

    limit: int | None
    done: int = 0

    def spent(self) -> bool:
        return bool(self.limit) and self.done >= self.limit


@dataclass
class SearchResult:
    arch: Architecture
    arch_path: Path
    report_path: Path
    predicted_ms: float
    target_ms: float
    held_out_acc: float | None = None  # the supernet's most probable path on the held-out split
    chance_acc: float | None = None
    slice_acc: float | None = None  # the derived architecture's slice of the supernet, on the same split


class TFNASSearch:
    """One search run in ``out_dir``: ``run()`` trains, scales, derives and writes the results."""

    def __init__(self, cfg: TfnasSearchConfig | dict, out_dir: str | Path, resume: bool = False, dist_info: Any = None):
        """``cfg``: a search config (a raw mapping is validated first, as a file would be)."""
        cfg = cfg if isinstance(cfg, TfnasSearchConfig) else resolve_config(cfg)
        self.cfg, self.out = cfg, Path(out_dir)
        self.resume = resume
        self.dist = dist_info
        self.rank = getattr(dist_info, "rank", 0)
        self.world = getattr(dist_info, "world_size", 1)
        self.is_main = self.rank == 0
        if cfg.runtime.threads:
            torch.set_num_threads(cfg.runtime.threads)
        self._build_latency()  # first: an unreachable target fails before any data is read
        self._build_data()
        self._build_model()
        self._plan_steps()
        self.history: list[dict[str, Any]] = []
        self._sums: dict[str, float] = {}  # running sums of the epoch's step metrics (checkpointed)
        self._counts: dict[str, int] = {}
        self._op_table = self.lat.op_table(self.model.widths())

    # ---- setup --------------------------------------------------------------------------------------------
    def _build_latency(self) -> None:
        """Space, latency model and target; the target must be reachable with the searched ops."""
        cfg = self.cfg
        self.space = load_space(cfg.space)
        self.lat = build_latency_model(cfg, self.space)
        self.target = cfg.target_ms
        self.paths = weight_paths(cfg.search.sampling)
        check_target(self.lat, self.target, TFNASSupernet.op_mask_for(self.space, cfg.search.ops))
        if cfg.search.measure_final:  # the closed loop times here: the table must describe this machine
            require_this_device(self.lat.lookup.table, "search.measure_final (re-aiming on timings of this machine)")

    def _build_data(self) -> None:
        rt = self.cfg.runtime
        self.device = getattr(self.dist, "device", None) or torch.device(
            "cuda" if rt.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        )
        self.data = search_data(self.cfg)
        if self.data.held_out is None:
            raise ConfigError("data.held_out_fraction must be > 0: the architecture steps need a held-out split")

    def _build_model(self) -> None:
        """Supernet (seeded), memory format, autocast and the two optimizers."""
        cfg, rt = self.cfg, self.cfg.runtime
        torch.manual_seed(cfg.seed)
        s = cfg.search
        model = TFNASSupernet(self.space, self.data.num_classes, s.ops, s.bn, s.op_weights, s.aligned_start)
        self.model = model.to(self.device)
        self.model.set_mixed_impl(rt.mixed_op)
        self.memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format
        self.autocast_dtype = steps.autocast_dtype(rt.autocast)
        self._autocast = steps.autocast_context(self.device, self.autocast_dtype)
        self.model = apply_memory_format(self.model, rt.channels_last)
        self.weights = list(self.model.weight_parameters())  # fixed set: built once, not every step
        self._new_optimizers()

    def _new_optimizers(self) -> None:
        """Fresh weight (SGD) and architecture (Adam) optimisers: at the start, and each epoch with
        ``search.optimizer_reset: epoch`` (the reference rebuilds both every epoch: no momentum carries over)."""
        self.w_opt = build_optimizer(self.weights, self.cfg.optim.weights)
        self.a_opt = build_optimizer(self.model.arch_parameters(), self.cfg.optim.arch)
        if hasattr(self, "loop"):
            self.loop.modules.update(w_opt=self.w_opt, a_opt=self.a_opt)

    def _plan_steps(self) -> None:
        """Per-process batch, steps per epoch, held-out batches, the data order, the lr schedule and the run loop."""
        s = self.cfg.search
        plan = plan_steps(s, self.data.train, self.data.held_out, self.world)
        self.batch, self.steps_per_epoch, self.held_batches = plan.batch, plan.steps_per_epoch, plan.held_batches
        self.total_steps = plan.total_steps
        self.batches = SearchBatches(
            self.data.train, self.data.held_out, plan, self.cfg.seed, self.rank, self.world, self.cfg.data.workers
        )
        self.lr_at = build_lr_schedule(self.cfg.optim.schedule, self.cfg.optim.weights.lr, self.total_steps,
                                       self.steps_per_epoch)  # fmt: skip
        modules = {"model": self.model, "w_opt": self.w_opt, "a_opt": self.a_opt}
        self.loop = RunLoop(self.out, modules, s.epochs, self.steps_per_epoch, is_main=self.is_main)

    # ---- data on this process's device ---------------------------------------------------------------------
    def _held_batch(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Architecture step ``j``'s held-out batch, on the device."""
        return self._to(*self.batches.held_batch(j))

    def _to(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(self.device, memory_format=self.memory_format), y.to(self.device)

    def _reduce(self, params: list[torch.nn.Parameter]) -> None:
        steps.all_reduce_grads(params, self.world)

    # ---- steps --------------------------------------------------------------------------------------------
    def temperature(self, epoch: int) -> float:
        """Gumbel temperature of ``epoch`` (``steps.gumbel_temperature``)."""
        return steps.gumbel_temperature(self.cfg.search, epoch)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, gstep: int, warm: bool) -> dict[str, float]:
        """Global step ``gstep``'s weight update (warm-up: the Gumbel path alone)."""
        gen = steps.step_generator(self.cfg.seed, gstep, 0)
        set_lr(self.w_opt, self.lr_at(gstep))
        paths = ("gumbel",) if warm else self.paths
        return steps.weight_step(
            self.model, self.w_opt, self.weights, x, y, paths, gen,
            autocast=self._autocast, grad_clip=self.cfg.optim.grad_clip, reduce=self._reduce,
        )  # fmt: skip

    def arch_step(self, x: torch.Tensor, y: torch.Tensor, gstep: int, epoch: int) -> dict[str, float]:
        """Global step ``gstep``'s architecture update on a held-out batch, toward ``self.target``."""
        gen = steps.step_generator(self.cfg.seed, gstep, 1)
        return steps.arch_step(
            self.model, self.a_opt, self.weights, x, y, gen,
            lat=self.lat, op_table=self._op_table, temperature=self.temperature(epoch), target_ms=self.target,
            latency_lambda=self.cfg.search.latency_lambda, autocast=self._autocast,
            grad_clip=self.cfg.optim.grad_clip, reduce=self._reduce,
        )  # fmt: skip

    # ---- epochs -------------------------------------------------------------------------------------------
    def _epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        """The epoch's history record; after the warm-up, the elastic width scaling toward the target."""
        s = self.cfg.search
        warm = epoch < s.warmup_epochs
        choice, fields = derivation.epoch_snapshot(self.model, self.lat, self._op_table)
        record: dict[str, Any] = {
            "epoch": epoch,
            "warmup": warm,
            "temperature": self.temperature(epoch),
            "lr": self.lr_at((epoch + 1) * self.steps_per_epoch - 1),
            **fields,
            **stats,
        }
        if not warm and s.elastic:
            changed, scaled = derivation.rescale_widths(
                self.model, self.lat, choice, self.target, s.elastic_rule, s.elastic_step, self.w_opt
            )
            record["widths_changed"] = changed
            self._op_table = self.lat.op_table(self.model.widths())
            record["scaled_ms"] = scaled
        record["widths"] = derivation.chosen_widths(self.model, choice[0])
        self.history.append(record)

    def _checkpoint_due(self, epochs_done: int, budget: _StepBudget) -> bool:
        """At an epoch end: the last epoch, a requested stop, or ``runtime.checkpoint_min_interval_s`` passed."""
        last = epochs_done == self.cfg.search.epochs or budget.spent()
        due = time.monotonic() - self._last_save >= self.cfg.runtime.checkpoint_min_interval_s
        return last or due

    def _save(self, epochs_done: int, step: int) -> None:
        """Checkpoint after ``epochs_done`` epochs and ``step`` steps of the next (with its running sums)."""
        sums = {"epoch_sums": dict(self._sums), "epoch_counts": dict(self._counts)} if step else {}
        self.loop.save(epochs_done, {"history": self.history, **sums}, step)
        self._last_save = time.monotonic()

    def _restore(self) -> None:
        """The history and the running sums of a resumed run (the model and optimisers: the run loop)."""
        extra = self.loop.extra
        self.history = list(extra.get("history", []))
        self._sums = dict(extra.get("epoch_sums", {}))
        self._counts = dict(extra.get("epoch_counts", {}))
        self._op_table = self.lat.op_table(self.model.widths())

    def run(self) -> SearchResult:
        metrics = self.loop.start(self.resume, self.cfg.to_dict(), ("runtime.", "out:"))
        if self.resume:
            self._restore()
        budget = _StepBudget(self.cfg.runtime.stop_after_steps)
        self._last_save = time.monotonic()
        try:
            for epoch in self.loop.epochs():
                start = self.loop.first_step(epoch)
                if not start:
                    self._sums, self._counts = {}, {}
                    if self.cfg.search.optimizer_reset == "epoch" and epoch > 0:
                        self._new_optimizers()
                t0 = time.perf_counter()
                self._run_steps(epoch, start, metrics, budget)
                stats = {k: self._sums[k] / self._counts[k] for k in self._sums}
                stats["epoch_seconds"] = time.perf_counter() - t0
                self._epoch_end(epoch, stats)
                if self._checkpoint_due(epoch + 1, budget):
                    self._save(epoch + 1, 0)
                if budget.spent() and epoch + 1 < self.cfg.search.epochs:
                    raise SearchInterrupted(f"stopped after {budget.done} steps (runtime.stop_after_steps)")
            return self.derive()
        finally:
            self.loop.finish(metrics)

    def _run_steps(self, epoch: int, start: int, metrics: Any, budget: _StepBudget) -> None:
        """Steps ``start`` .. ``steps_per_epoch - 1`` of ``epoch``: a weight step each, an architecture step
        every ``arch_every`` after the warm-up; a checkpoint when ``checkpoint_every_steps`` or the budget says."""
        s, rt = self.cfg.search, self.cfg.runtime
        warm = epoch < s.warmup_epochs
        arch_every, every = s.arch_every, rt.checkpoint_every_steps
        bar = progress(
            self.batches.train_loader(epoch, start),
            total=self.steps_per_epoch - start,
            desc=f"search {epoch + 1}/{s.epochs}",
            enabled=rt.progress if self.is_main else False,
        )
        for step, (x, y) in enumerate(bar, start):
            gstep = epoch * self.steps_per_epoch + step
            x, y = self._to(x, y)
            row = self.weight_step(x, y, gstep, warm)
            if not warm and (step + 1) % arch_every == 0:
                j = (epoch - s.warmup_epochs) * (self.steps_per_epoch // arch_every) + step // arch_every
                row.update(self.arch_step(*self._held_batch(j), gstep, epoch))
            for k, v in row.items():
                self._sums[k] = self._sums.get(k, 0.0) + v
                self._counts[k] = self._counts.get(k, 0) + 1
            if metrics is not None:
                metrics.log(gstep, epoch=epoch, lr=self.lr_at(gstep), temperature=self.temperature(epoch), **row)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()})
            budget.done += 1
            if step + 1 == self.steps_per_epoch:
                return  # the epoch end saves
            if (every and (gstep + 1) % every == 0) or budget.spent():
                self._save(epoch, step + 1)
            if budget.spent():
                raise SearchInterrupted(f"stopped after {budget.done} steps (runtime.stop_after_steps)")

    # ---- derivation ---------------------------------------------------------------------------------------
    def held_out_accuracy(self, arch: tuple[list[int], list[int], list[int]] | None = None) -> float:
        """Top-1 on the whole held-out split (shuffled batches, batch statistics) of the supernet's most
        probable path, or of ``arch`` = (ops, widths, depths), its slice of the supernet. A supernet near
        chance level here chose its architecture by latency alone."""
        loader = evaluation_loader(self.data.held_out, self.batch, seed=self.cfg.seed)
        return derivation.held_out_accuracy(self.model, loader, self._to, self._autocast, arch)

    def derive(self) -> SearchResult:
        """The final architecture: derived, moved to the target (and measured when asked), then written."""
        # every rank evaluates the same weights on the same whole split: identical numbers, identical arch files
        held_acc = self.held_out_accuracy()
        choice, moves, loop = self._final_choice()
        slice_acc = self.held_out_accuracy(choice)
        predicted = self.lat.arch_ms(*choice)
        chance = 1.0 / self.data.num_classes
        meta = {
            "search": "tfnas",
            "name": self.cfg.name,
            "target_ms": self.target,
            "predicted_ms": predicted,
            "relative_error": predicted / self.target - 1.0,
            "lut": str(self.cfg.lut),
            "calibrated": self.lat.calibration is not None,
            "seed": self.cfg.seed,
            "epochs": self.cfg.search.epochs,
            "supernet_held_out_acc": held_acc,
            "derived_slice_held_out_acc": slice_acc,  # the derived net's own slice of the supernet
            "chance_acc": chance,
            "op_weights": self.cfg.search.op_weights,
        }
        if loop:
            meta["measured_ms"] = loop[-1]["measured_ms"]
        arch = self.lat.to_arch(*choice, meta)
        arch_path, report_path = self.out / "arch.json", self.out / "report.json"
        if self.is_main:
            arch.save(arch_path)
            self._write_report(report_path, arch, choice, moves, loop)
        if not math.isfinite(predicted):
            raise TfnasError("derived latency is not finite")
        return SearchResult(arch, arch_path, report_path, predicted, self.target, held_acc, chance, slice_acc)

    def _final_choice(self) -> tuple[derivation.Choice, list, list]:
        """(choice, structural moves, measured loop): the most probable choice, moved to the predicted target,
        then re-aimed on the real runtime when ``measure_final`` (``measured.measured_loop``)."""
        s = self.cfg.search
        choice, moves, prior = derivation.final_choice(self.model, self.lat, self.target, s.final_tolerance)
        loop: list = []
        if s.measure_final and self.is_main:
            measure = table_measurer(self.lat.lookup.table, s.measure_rounds)
            choice, loop = measured_loop(
                self.lat, choice, prior, self.target, measure,
                tolerance=s.measure_tolerance, iterations=s.measure_iterations, final_tolerance=s.final_tolerance,
                pool=s.measure_pool,
            )  # fmt: skip
        return choice, moves, loop

    def _write_report(self, path: Path, arch: Architecture, choice: derivation.Choice, moves: list, loop: list) -> None:
        """``report.json`` (target, prediction, costs, history) and the history plots."""
        report = search_report(
            arch, self.lat, choice, moves, loop, self.history,
            tolerance=self.cfg.search.final_tolerance, lut=str(self.cfg.lut),
            train_resolution=self.cfg.data.resolution, op_mask=self.model.op_mask,
        )  # fmt: skip
        write_report(path, report)
        plot_history(self.out, self.history, self.target, self.model.op_names, [st.layers for st in self.space.stages])
