"""One call to seed every RNG a run uses."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and CUDA).

    ``deterministic`` also asks torch for deterministic kernels (cuDNN
    autotuning off, deterministic algorithms where they exist, warning
    otherwise): reproducible on GPU at some cost in speed.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # Only affects subprocesses (e.g. DataLoader workers started with spawn).
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        # Required by cuBLAS for deterministic matmuls; must be set before the first CUDA call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
