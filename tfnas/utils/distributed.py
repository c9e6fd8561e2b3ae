"""torch DDP helpers for runs launched with torchrun (or plain ``python``).

Under torchrun the environment carries RANK / WORLD_SIZE / LOCAL_RANK and the
rendezvous address; without them everything degrades to a single process, so
the same training code runs in both cases. CUDA uses NCCL, CPU uses gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from tfnas.errors import TfnasError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise TfnasError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun set up, or describe a single process.

    ``device`` forces ``"cpu"`` or ``"cuda"`` (default: CUDA when available);
    ``backend`` overrides the default (nccl for CUDA, gloo for CPU).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise TfnasError("device 'cuda' was requested but CUDA is not available")
    if use_cuda:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1:
        if not dist.is_available():
            raise TfnasError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
        if not dist.is_initialized():
            for var in ("MASTER_ADDR", "MASTER_PORT"):
                if var not in os.environ:
                    raise TfnasError(f"WORLD_SIZE={world_size} but {var} is not set; launch with torchrun")
            dist.init_process_group(
                backend=backend or ("nccl" if use_cuda else "gloo"),
                init_method="env://",
                rank=rank,
                world_size=world_size,
            )
    return DistInfo(rank, world_size, local_rank, dev, rank == 0)


def wrap_ddp(model: nn.Module, info: DistInfo, find_unused_parameters: bool = False) -> nn.Module:
    """Move ``model`` to the process's device and wrap it in DDP when distributed.

    Sampled supernets leave some parameters without gradients in a step; pass
    ``find_unused_parameters=True`` for them.
    """
    model = model.to(info.device)
    if not info.distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying module of a DDP wrapper (for saving and export)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a new tensor; the input is unchanged)."""
    if not info.distributed:
        return tensor.detach().clone()
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def make_sampler(
    dataset: Dataset, info: DistInfo, shuffle: bool = True, seed: int = 0, drop_last: bool = True
) -> DistributedSampler | None:
    """A ``DistributedSampler`` when distributed (pass it to ``make_loader``), else None."""
    if not info.distributed:
        return None
    return DistributedSampler(
        dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
