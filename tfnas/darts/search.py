"""The one bilevel trainer every DARTS-family method runs on.

Each step: an architecture step on a held-out batch (first or second order,
plus the method's regularizers; none during the method's warm-up epochs), then
a weight step on a training batch (with the method's perturbation of the op
weights, if any; SDARTS grows its radius per epoch, as the official code). Every ``hessian.every``
steps the dominant Hessian eigenvalue is logged. Each epoch ends with a
checkpoint (model, both optimisers, RNG) and the current genotype, so a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tfnas.darts.architect import VirtualStep, arch_step
from tfnas.darts.config import DartsSearchConfig, resolve_search_config
from tfnas.darts.derive import derive_genotype
from tfnas.darts.draw import plot_genotype
from tfnas.darts.hessian import EigenStopRule, supernet_val_eigenvalue
from tfnas.darts.latency import build_latency_regularizer
from tfnas.darts.methods import SearchMethod
from tfnas.darts.space import Genotype
from tfnas.darts.supernet import DartsSupernet
from tfnas.data import build_datasets, make_loader, set_loader_epoch
from tfnas.errors import ConfigError
from tfnas.train.common import RunLoop, StepTimer, build_lr_schedule, build_optimizer, progress, set_lr
from tfnas.utils.memory_format import apply_memory_format
from tfnas.utils.metrics import plot_series, read_metrics
from tfnas.utils.seed import seed_everything
from tfnas_base.atomic import atomic_write_json

_log = logging.getLogger(__name__)


def build_search_model(
    cfg: DartsSearchConfig | dict[str, Any], num_classes: int, in_channels: int
) -> tuple[DartsSupernet, SearchMethod]:
    """Supernet + method from a search config (the method sets the supernet's structure)."""
    cfg = cfg if isinstance(cfg, DartsSearchConfig) else resolve_search_config(cfg)
    method = cfg.method.build()
    model = DartsSupernet(cfg.space, cfg.supernet, method.supernet, num_classes, in_channels)
    model.normalize = method.normalize
    return model, method


@dataclass
class DartsResult:
    genotype: Genotype
    out_dir: Path
    epochs_done: int
    early_stopped: bool = False
    timings: dict[str, float] = field(default_factory=dict)


class DartsSearch:
    """Configured search run writing into ``out_dir`` (metrics, checkpoints, genotypes)."""

    def __init__(
        self,
        cfg: DartsSearchConfig | dict[str, Any],
        out_dir: str | Path,
        show_progress: bool | None = None,
        source: str = "<DARTS config>",
    ):
        self.cfg = cfg if isinstance(cfg, DartsSearchConfig) else resolve_search_config(cfg, source)
        self.out_dir = Path(out_dir)
        rt, s = self.cfg.runtime, self.cfg.search
        self.show_progress = rt.progress if show_progress is None else show_progress
        if rt.threads:
            torch.set_num_threads(rt.threads)
        seed_everything(s.seed)
        self._build_data()
        self.model, self.method = build_search_model(self.cfg, self.data.num_classes, self.data.in_channels)
        self.channels_last = rt.channels_last
        self.model = apply_memory_format(self.model, self.channels_last)
        self.criterion = nn.CrossEntropyLoss()
        self.w_opt = build_optimizer(self.model.weight_parameters(), s.w_optimizer)
        self.a_opt = build_optimizer(self.model.arch_parameters(), s.a_optimizer)
        self.base_lr = s.w_optimizer.lr
        self.epochs = s.epochs
        self.steps_per_epoch = min(len(self.train_loader), len(self.val_loader), s.max_steps_per_epoch or 10**9)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.lr_at = build_lr_schedule(s.w_schedule, self.base_lr, self.total_steps, self.steps_per_epoch)
        self.grad_clip = s.grad_clip
        self.timer = StepTimer()
        if self.cfg.latency is not None:
            self.method.regularizers.append(build_latency_regularizer(self.cfg.latency, self.model))
        h = self.cfg.hessian
        self.hessian_every, self.hessian_iters = h.every, h.iters
        self.stop_rule = EigenStopRule(h.early_stop.window, h.early_stop.ratio) if h.early_stop else None
        self.eigen_genotypes: list[Genotype] = []
        w = s.w_optimizer
        self.virtual = VirtualStep(lr=self.base_lr, momentum=w.momentum, weight_decay=w.weight_decay)

    # ------------------------------------------------------------ setup
    def _build_data(self) -> None:
        d, seed = self.cfg.data, self.cfg.search.seed
        self.data = build_datasets(d.source, resolution=d.resolution, num_classes=d.num_classes,
                                   held_out_fraction=d.held_out_fraction, num_samples=d.num_samples, seed=seed,
                                   augment="all" if d.augment else "none", max_samples=d.max_samples)  # fmt: skip
        if self.data.held_out is None:
            raise ConfigError("DARTS search needs a held-out split: set data.held_out_fraction > 0")
        self.train_loader = make_loader(self.data.train, d.batch_size, shuffle=True, seed=seed, workers=d.workers)
        self.val_loader = make_loader(self.data.held_out, d.batch_size, shuffle=True, seed=seed + 1, workers=d.workers)

    # ------------------------------------------------------------ steps
    def _to(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def derive(self, meta: dict | None = None) -> Genotype:
        """The current genotype by the method's own derivation rule."""
        return derive_genotype(self.model, meta, self.method.derive, **self.method.derive_options)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, progress_: float) -> tuple[float, float]:
        """``progress_``: the perturbation's schedule position (``epoch / epochs`` in the trainer)."""
        with torch.no_grad():
            weights = self.model.arch_weights()
        if self.method.perturb is not None:
            weights = self.method.perturb(self.model, weights, x, y, self.criterion, progress_)
        self.w_opt.zero_grad(set_to_none=True)
        logits = self.model(x, weights)
        loss = self.criterion(logits, y)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(list(self.model.weight_parameters()), self.grad_clip)
        self.w_opt.step()
        acc = (logits.detach().argmax(1) == y).float().mean()
        return float(loss.detach()), float(acc)

    def progress_at(self, step: int) -> float:
        return step / max(self.total_steps - 1, 1)

    def _plot_curves(self) -> None:
        rows = read_metrics(self.out_dir)
        if not rows:
            return

        def series(key: str) -> tuple[list[float], list[float]]:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            return [p[0] for p in pts], [p[1] for p in pts]

        losses = {k: series(k) for k in ("train_loss", "val_ce") if series(k)[0]}
        plot_series(self.out_dir / "loss.png", {k: v[1] for k, v in losses.items()}, "search losses", "step",
                    "loss", xs={k: v[0] for k, v in losses.items()})  # fmt: skip
        xs, eig = series("hessian_eig")
        if eig:
            plot_series(self.out_dir / "hessian_eig.png", {"max eigenvalue": eig}, "Hessian of L_val w.r.t. alpha",
                        "step", "eigenvalue", xs={"max eigenvalue": xs})  # fmt: skip

    # ------------------------------------------------------------ loop
    def run(self, resume: bool = False, stop_after: int | None = None) -> DartsResult:
        """Run (or continue) the search; ``stop_after`` ends this call after that many epochs
        (as an interruption would), leaving a resumable checkpoint."""
        modules = {"model": self.model, "w_opt": self.w_opt, "a_opt": self.a_opt}
        loop = RunLoop(self.out_dir, modules, self.epochs, self.steps_per_epoch, old_epoch_is_index=True)
        logger = loop.start(resume, self.cfg.to_dict())
        if self.stop_rule is not None:
            self.stop_rule.history = list(loop.extra.get("eigen_history", []))
        stopped = bool(loop.extra.get("early_stopped", False))
        warmup = self.method.arch_warmup_epochs
        if warmup >= self.epochs:
            _log.warning("%d warm-up epochs >= %d epochs: no architecture step will run", warmup, self.epochs)
        epochs_done = loop.epoch
        try:
            for epoch in loop.epochs():
                if stopped:
                    break
                stopped, means = self._train_epoch(epoch, logger)
                genotype = self.derive({"epoch": epoch, "method": self.method.name})
                genotype.save(self.out_dir / "genotypes" / f"epoch_{epoch:03d}.json")
                extra = {"early_stopped": stopped, **means}
                extra["eigen_history"] = list(self.stop_rule.history) if self.stop_rule else []
                epochs_done = epoch + 1
                loop.save(epochs_done, extra)
                if stop_after is not None and epochs_done - loop.epoch >= stop_after:
                    break
        finally:
            loop.finish(logger)
        return self._finish(epochs_done, stopped)

    def _train_epoch(self, epoch: int, logger: Any) -> tuple[bool, dict[str, float]]:
        """One epoch of paired architecture and weight steps; returns (early-stopped, mean train loss/acc)."""
        log_every = self.cfg.search.log_every
        self.model.train()
        set_loader_epoch(self.train_loader, epoch)
        set_loader_epoch(self.val_loader, epoch)
        batches = itertools.islice(zip(self.train_loader, self.val_loader), self.steps_per_epoch)
        bar = progress(batches, self.steps_per_epoch, f"search {epoch + 1}/{self.epochs}", self.show_progress)
        sums, n, stopped = {"train_loss": 0.0, "train_acc": 0.0}, 0, False
        for i, (train_batch, val_batch) in enumerate(bar):
            step = epoch * self.steps_per_epoch + i
            scalars = self._step(epoch, step, train_batch, val_batch)
            sums["train_loss"] += scalars["train_loss"]
            sums["train_acc"] += scalars["train_acc"]
            n += 1
            if "hessian_eig" in scalars:
                self.eigen_genotypes.append(self.derive())
                stopped = self.stop_rule is not None and self.stop_rule.update(scalars["hessian_eig"])
            if step % log_every == 0 or stopped:
                logger.log(step, **scalars)
            bar.set_postfix(loss=f"{scalars['train_loss']:.3f}", acc=f"{scalars['train_acc']:.2f}")
            if stopped:
                break
        return stopped, {k: v / max(n, 1) for k, v in sums.items()}

    def _step(self, epoch: int, step: int, train_batch: tuple, val_batch: tuple) -> dict[str, Any]:
        """An architecture step (after the method's warm-up), a weight step, and the Hessian diagnostic when due."""
        (xt, yt), (xv, yv) = train_batch, val_batch
        xt, xv = self._to(xt), self._to(xv)
        p = self.progress_at(step)
        lr = self.lr_at(step)
        set_lr(self.w_opt, lr)
        self.virtual.lr = lr
        if self.method.aux_beta is not None:
            self.model.aux_beta = self.method.aux_beta(
                epoch / self.epochs if self.method.aux_beta_per == "epoch" else p
            )
        parts: dict[str, float] = {}
        if epoch >= self.method.arch_warmup_epochs:  # warm-up epochs (PC-DARTS) train the weights only
            with self.timer("arch_step"):
                parts = arch_step(
                    self.model, self.method, self.a_opt, (xt, yt), (xv, yv), self.criterion, self.virtual, self.w_opt, p
                )
        with self.timer("weight_step"):
            loss, acc = self.weight_step(xt, yt, epoch / self.epochs)
        scalars: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": loss, "train_acc": acc, **parts}
        if self.method.aux_beta is not None:
            scalars["aux_beta"] = self.model.aux_beta
        if self.hessian_every and (step + 1) % self.hessian_every == 0:
            with self.timer("hessian"):
                scalars["hessian_eig"] = supernet_val_eigenvalue(
                    self.model, xv, yv, self.criterion, self.hessian_iters, seed=step
                )
        return scalars

    def _finish(self, epochs_done: int, stopped: bool) -> DartsResult:
        """The final genotype (RobustDARTS fallback, predicted latency), pictures and timings."""
        final = self.derive({"method": self.method.name, "epochs": epochs_done})
        if stopped and self.stop_rule is not None and len(self.eigen_genotypes) > self.stop_rule.window:
            # RobustDARTS: fall back to the architecture from before the eigenvalue started rising
            final = self.eigen_genotypes[-self.stop_rule.window - 1]
            final = final.with_meta(early_stopped=True)
        for reg in self.method.regularizers:
            predict = getattr(reg, "predict_genotype", None)
            value = predict(final) if callable(predict) else None
            if value is not None:  # latency-aware search: what the LUT predicts for the derived network
                final = final.with_meta(predicted_latency_ms=value, target_latency_ms=reg.target_ms)
                _log.info("derived network: %.3f ms predicted by the LUT (target %s ms)", value, reg.target_ms)
        final.save(self.out_dir / "genotype.json")
        try:
            plot_genotype(final, self.out_dir)
            self._plot_curves()
        except Exception as e:  # pictures are a nicety; never fail the search for them
            _log.warning("could not draw the cells or curves: %s", e)
        timings = self.timer.summary()
        atomic_write_json(self.out_dir / "timings.json", timings)
        return DartsResult(final, self.out_dir, epochs_done, stopped, timings)
