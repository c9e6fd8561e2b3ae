"""Trainer pieces shared by the TF-NAS and DARTS searches and the training of derived networks.

Builders take the typed config specs (``tfnas.config.loader``), so a run is fully
described by its config file:

* ``build_optimizer(params, OptimizerSpec(name="sgd", lr=0.025, ...))``
* ``build_lr_schedule(ScheduleSpec(name="cosine", min_lr=1e-3), base_lr, total_steps, steps_per_epoch)``
  returns a pure function ``step -> lr`` (no scheduler state to checkpoint);
* ``RunCheckpoint``: one ``last.pt`` per run directory with epoch, model,
  optimizers, RNG state and free extras, written atomically each epoch;
* ``RunLoop``: the epoch loop of every trainer (begin, resume, metrics, checkpoints,
  and the run folder's lock: a second process writing into it is refused);
* ``StepTimer``: wall-clock per named phase (e.g. weight step vs arch step);
* ``progress`` (from ``tfnas_base.progress``, shared with the device side): a tqdm bar on a
  terminal, plain lines in a log.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tfnas.config.loader import OptimizerSpec, ScheduleSpec, validate
from tfnas.errors import ConfigError, TfnasError
from tfnas.utils.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_state_checked,
    restore_rng_state,
    save_checkpoint,
)
from tfnas.utils.io import read_json
from tfnas.utils.metrics import MetricsLogger
from tfnas_base import lock
from tfnas_base.atomic import atomic_write_json, atomic_write_text
from tfnas_base.progress import progress as progress  # re-exported: the trainers' one progress helper

LRSchedule = Callable[[int], float]


# ------------------------------------------------------------------ optimizers
def build_optimizer(params: Iterable[torch.nn.Parameter], spec: OptimizerSpec | dict) -> torch.optim.Optimizer:
    """The optimizer ``spec`` names, over ``params`` (a raw mapping is validated first)."""
    spec = spec if isinstance(spec, OptimizerSpec) else validate(OptimizerSpec, spec, "<optimizer>")
    params = list(params)
    if spec.name == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay
        )
    cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    return cls(params, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)


def build_lr_schedule(
    spec: ScheduleSpec | dict | None, base_lr: float, total_steps: int, steps_per_epoch: int = 1
) -> LRSchedule:
    """``step -> lr``: constant | cosine (to ``min_lr``) | step (x ``gamma`` every ``step_size``), after a
    linear warm-up of ``warmup_steps``. With ``per: epoch`` the schedule moves once per epoch (every
    step of an epoch gets the epoch's rate) and its ``warmup_steps`` / ``step_size`` count epochs."""
    spec = spec or ScheduleSpec(name="constant")
    spec = spec if isinstance(spec, ScheduleSpec) else validate(ScheduleSpec, spec, "<lr schedule>")
    spe = max(int(steps_per_epoch), 1)
    unit = spe if spec.per == "epoch" else 1
    total = max(int(total_steps) // unit, 1)
    warmup = spec.warmup_steps + spec.warmup_epochs * (1 if spec.per == "epoch" else spe)

    def main(t: int) -> float:
        if spec.name == "cosine":
            frac = min(max(t - warmup, 0) / max(total - warmup, 1), 1.0)
            return spec.min_lr + 0.5 * (base_lr - spec.min_lr) * (1.0 + math.cos(math.pi * frac))
        if spec.name == "step":
            return base_lr * spec.gamma ** (max(t - warmup, 0) // (spec.step_size or total))
        return base_lr

    def schedule(step: int) -> float:
        t = step // unit
        if warmup and t < warmup:
            return base_lr * (t + 1) / warmup
        return main(t)

    return schedule


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def config_diff(a: dict, b: dict, path: str = "") -> list[str]:
    """Readable differences between two resolved configs."""
    out = []
    for k in sorted(set(a) | set(b)):
        where = f"{path}.{k}" if path else k
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, where)
        elif va != vb:
            out.append(f"{where}: {va!r} -> {vb!r}")
    return out


# ------------------------------------------------------------------ run folders
RUN_MARKER = ".tfnas-run"  # written into every run folder: what tfnas may write into again
RUN_LOCK = ".tfnas-lock"  # held (flock) while a process writes the run


def lock_run_dir(out: str | Path) -> None:
    """Take the run folder's lock for this process (re-entrant); a run in another process is refused."""
    lock.acquire(Path(out) / RUN_LOCK, f"run folder {out}")


def unlock_run_dir(out: str | Path) -> None:
    lock.release(Path(out) / RUN_LOCK)


def is_run_dir(out: Path) -> bool:
    """A folder of ours: it holds our marker or a run checkpoint (runs from before the marker)."""
    return (out / RUN_MARKER).exists() or (out / "checkpoints" / "last.pt").exists()


def claim_run_dir(out: str | Path, resume: bool = False, force: bool = False) -> Path:
    """Refuse to write a run into a folder that holds someone else's files, unless ``force``.

    An empty or new folder, or one of our runs, is fine (whether a previous run there may be
    continued or replaced is ``RunCheckpoint.begin``'s business). Marks the folder as ours and takes
    its lock (held until the run loop finishes or the process ends): a run in another process is refused.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TfnasError(f"--out {out} is a file; give a folder for the run")
    files = sorted(p.name for p in out.iterdir() if p.name != RUN_LOCK) if out.is_dir() else []
    if files and not resume and not force and not is_run_dir(out):
        shown = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
        raise TfnasError(
            f"--out {out} is not empty and not a tfnas run ({shown}); its files would be overwritten:"
            " choose a new or empty folder, or pass --force to write into it anyway"
        )
    out.mkdir(parents=True, exist_ok=True)
    lock_run_dir(out)
    if not (out / RUN_MARKER).exists():
        atomic_write_text(out / RUN_MARKER, "a tfnas run folder: tfnas may write into it again\n")
    return out


# ------------------------------------------------------------------ checkpoints
CHECKPOINT_VERSION = 2  # 2: "epoch" is the number of finished epochs in every run's checkpoint


class RunCheckpoint:
    """``<out_dir>/checkpoints/last.pt``: model, optimizers, RNG state and the run's position."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / "checkpoints"

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    def exists(self) -> bool:
        return self.last.exists()

    def begin(
        self, resume: bool, cfg: dict[str, Any], ignore: tuple[str, ...] = ("runtime.",), write: bool = True
    ) -> None:
        """Check a run may start or continue in this folder, then save its ``config.json``.

        Without ``resume`` an existing checkpoint is never overwritten; with it there must be
        one, and the saved config may differ only in keys starting with ``ignore`` (threads,
        progress bars, devices: what does not change the result).
        """
        out = self.dir.parent
        cfg_path = out / "config.json"
        if write:
            claim_run_dir(out, resume)
        if resume:
            if not self.exists():
                raise TfnasError(f"--resume: no checkpoint at {self.last}; start the run without --resume")
            if cfg_path.exists():
                saved = read_json(cfg_path, "saved run config")
                diffs = [d for d in config_diff(saved, cfg) if not d.startswith(ignore)]
                if diffs:
                    raise ConfigError(
                        f"--resume with a different config than the run's saved one ({cfg_path}):\n  "
                        + "\n  ".join(diffs)
                    )
        elif self.exists():
            raise TfnasError(f"{out} already holds a checkpoint ({self.last}); pass --resume or choose another --out")
        if write:
            atomic_write_json(cfg_path, cfg)

    def save(self, epochs_done: int, modules: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """``epochs_done``: finished epochs (the convention of every run: see ``RunLoop``);
        ``modules``: name -> object with ``state_dict()`` (models, optimizers)."""
        state = {
            "version": CHECKPOINT_VERSION,
            "epoch": int(epochs_done),
            "state": {k: m.state_dict() for k, m in modules.items()},
            "rng": capture_rng_state(),
            "extra": dict(extra or {}),
        }
        return save_checkpoint(self.last, state)

    def load(
        self, modules: dict[str, Any], restore_rng: bool = True, old_epoch_is_index: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """Restore ``modules`` in place; return (finished epochs, extra).

        Checkpoints from before ``CHECKPOINT_VERSION`` 2 are converted: the DARTS loops stored the
        index of the finished epoch (``old_epoch_is_index``), TF-NAS its position as ``next_step``.
        """
        state = load_checkpoint(self.last)
        if not isinstance(state.get("state"), dict):
            raise ConfigError(f"checkpoint {self.last} is not a run checkpoint (no 'state'); was it written by tfnas?")
        missing = [k for k in modules if k not in state["state"]]
        if missing:
            raise ConfigError(f"checkpoint {self.last} lacks {missing}; was it written by another command?")
        version = int(state.get("version", 1))
        if version > CHECKPOINT_VERSION:
            raise ConfigError(
                f"checkpoint {self.last} has version {version}, newer than this tfnas reads ({CHECKPOINT_VERSION});"
                " resume it with the tfnas that wrote it"
            )
        for k, m in modules.items():
            if isinstance(m, torch.nn.Module):
                load_state_checked(m, state["state"][k], self.last)
            else:
                m.load_state_dict(state["state"][k])
        if restore_rng and state.get("rng") is not None:
            restore_rng_state(state["rng"])
        epochs_done, extra = int(state["epoch"]), dict(state.get("extra", {}))
        if version == 1:
            epochs_done += 1 if old_epoch_is_index else 0
            if "next_step" in extra:
                extra["step"] = extra.pop("next_step")
        return epochs_done, extra


class RunLoop:
    """The epoch loop every trainer runs on: TF-NAS and DARTS search, ``tfnas train``, DARTS eval training.

    One convention for all: a checkpoint holds the number of finished epochs and, when it was
    written inside an epoch, the number of finished steps of the next one (``step``). ``start``
    claims the run folder (or checks a resumed run's config), restores the checkpoint and drops
    the metrics logged after it, so a resumed run logs every step exactly once. Under DDP every
    rank loads, only rank 0 (``is_main``) writes.

        loop = RunLoop(out, {"model": model, "opt": opt}, epochs, steps_per_epoch)
        logger = loop.start(resume, cfg)
        for epoch in loop.epochs():
            ...  # steps loop.first_step(epoch) .. steps_per_epoch - 1
            loop.save(epoch + 1, extra)
    """

    def __init__(
        self,
        out_dir: str | Path,
        modules: dict[str, Any],
        epochs: int,
        steps_per_epoch: int,
        is_main: bool = True,
        old_epoch_is_index: bool = False,
    ):
        self.out = Path(out_dir)
        self.ckpt = RunCheckpoint(self.out)
        self.modules = modules
        self.total_epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)
        self.is_main = is_main
        self.old_epoch_is_index = old_epoch_is_index
        self.epoch = 0  # finished epochs
        self.step = 0  # finished steps of epoch ``self.epoch`` (a checkpoint written inside it)
        self.extra: dict[str, Any] = {}

    @property
    def global_step(self) -> int:
        """Steps finished so far: the first step the run (re)starts with."""
        return self.epoch * self.steps_per_epoch + self.step

    def start(self, resume: bool, cfg: dict[str, Any], ignore: tuple[str, ...] = ("runtime.",)) -> Any:
        """Begin or resume; returns the ``MetricsLogger`` (None off rank 0). ``ignore``: see ``RunCheckpoint.begin``.

        Rank 0 holds the run folder's lock until ``finish``.
        """
        self.ckpt.begin(resume, cfg, ignore, write=self.is_main)
        if resume:
            self.epoch, self.extra = self.ckpt.load(self.modules, old_epoch_is_index=self.old_epoch_is_index)
            self.step = int(self.extra.pop("step", 0))
        if not self.is_main:
            return None
        logger = MetricsLogger(self.out, resume=resume)
        if resume:
            logger.truncate_after(self.global_step - 1)
        return logger

    def epochs(self) -> range:
        """The epochs left to run (the first may be a partly finished one: ``first_step``)."""
        return range(self.epoch, self.total_epochs)

    def first_step(self, epoch: int) -> int:
        """Where ``epoch`` starts: after the checkpoint's finished steps in the resumed epoch, else 0."""
        return self.step if epoch == self.epoch else 0

    def save(self, epochs_done: int, extra: dict[str, Any] | None = None, step: int = 0) -> None:
        """Checkpoint after ``epochs_done`` epochs (+ ``step`` steps of the next); rank 0 only."""
        if self.is_main:
            self.ckpt.save(epochs_done, self.modules, {**(extra or {}), "step": int(step)})

    def finish(self, logger: Any = None) -> None:
        """Close the metrics and release the run folder's lock (call in a ``finally``)."""
        if logger is not None:
            logger.close()
        if self.is_main:
            unlock_run_dir(self.out)


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: Iterable, device: torch.device | None = None, channels_last: bool = False
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of ``model`` in eval mode over ``loader``."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        if device is not None:
            x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss_sum += torch.nn.functional.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        count += len(y)
    return loss_sum / max(count, 1), correct / max(count, 1)


# ------------------------------------------------------------------ timing / progress
class StepTimer:
    """Accumulates wall-clock seconds per phase: ``with timer("weight"): ...``."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.total[phase] += time.perf_counter() - t0
            self.count[phase] += 1

    def mean(self, phase: str) -> float:
        return self.total[phase] / max(self.count[phase], 1)

    def summary(self) -> dict[str, float]:
        return {f"sec_per_{k}": self.mean(k) for k in self.total}
