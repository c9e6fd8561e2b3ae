"""Evaluation batches mix classes (issue 22, item 2).

The held-out split keeps its indices sorted, so on an ImageFolder tree it is class-sorted in index order.
The supernets' BNs normalise with the batch's own statistics: a batch of one class normalises away what
tells the classes apart (a trained network scored 26.5% read in index order, 74.9% on shuffled batches).
Every batch a search evaluates or steps the architecture on must therefore mix the classes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from tfnas.data import build_datasets, evaluation_loader, make_loader

CLASSES, PER_CLASS, BATCH = 4, 16, 8


@pytest.fixture
def sorted_folder(tmp_path):
    """An ImageFolder tree of 4 classes x 16 tiny PNGs: read in index order, its labels are sorted."""
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(PER_CLASS):
            arr = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
            arr[..., c % 3] = 60 * c  # a class-dependent colour: batch statistics differ per class
            Image.fromarray(arr).save(root / f"class{c}" / f"{i:02d}.png")
    return root


def _labels(dataset) -> list[int]:
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _batch_labels(batches) -> list[list[int]]:
    return [[int(v) for v in y] for y in batches]


def assert_batches_mix_classes(batches: list[list[int]], batch: int = BATCH) -> None:
    """No full batch is of one class, and the batches hold 3 or more of the 4 classes on average
    (a random batch of 8 from 4 balanced classes holds 3.7; a class-sorted one 1 or 2)."""
    full = [b for b in batches if len(b) == batch]
    assert full, "no full batch to judge"
    distinct = [len(set(b)) for b in full]
    assert min(distinct) >= 2, f"a batch of a single class: {batches}"
    assert sum(distinct) / len(distinct) >= 3.0, f"batches nearly class-sorted: {batches}"


def test_held_out_split_is_class_sorted_but_evaluation_batches_mix_classes(sorted_folder):
    bundle = build_datasets(sorted_folder, resolution=8, held_out_fraction=0.5, seed=3)
    labels = _labels(bundle.held_out)
    assert len(labels) == CLASSES * PER_CLASS // 2 and set(labels) == set(range(CLASSES))
    assert labels == sorted(labels)  # the premise: in index order the held-out split is class-sorted

    in_order = _batch_labels(y for _, y in make_loader(bundle.held_out, BATCH, shuffle=False, drop_last=False))
    with pytest.raises(AssertionError):  # ...so index-order batches are (nearly) one class each
        assert_batches_mix_classes(in_order)

    loader = evaluation_loader(bundle.held_out, BATCH, seed=3)
    batches = _batch_labels(y for _, y in loader)
    assert sorted(v for b in batches for v in b) == labels  # every sample once, none dropped
    assert_batches_mix_classes(batches)
    assert len(Counter(batches[0])) >= 3  # the first batch already spreads over the classes
    assert _batch_labels(y for _, y in evaluation_loader(bundle.held_out, BATCH, seed=3)) == batches  # seeded


# ---- TF-NAS -----------------------------------------------------------------------------------------------------


def _tfnas_search(tmp_path, tiny_space, folder):
    from tests.test_search_tfnas import _target, tiny_config
    from tfnas.mbv2.search.searcher import TFNASSearch

    cfg = tiny_config(tmp_path, tiny_space)
    cfg["data"].update(source=str(folder), held_out_fraction=0.5)
    cfg["target_ms"] = _target(cfg, tiny_space, 0.5)
    search = TFNASSearch(cfg, tmp_path / "run")
    assert search.batch == BATCH and _labels(search.data.held_out) == sorted(_labels(search.data.held_out))
    return search


def test_tfnas_held_out_accuracy_reads_class_mixed_batches(tmp_path, tiny_space, sorted_folder, monkeypatch):
    """The reported held-out accuracy (batch-statistics BN) must not be read in class-sorted batches."""
    search = _tfnas_search(tmp_path, tiny_space, sorted_folder)
    seen: list[list[int]] = []
    real = search._to

    def recording_to(x: torch.Tensor, y: torch.Tensor):
        seen.append([int(v) for v in y])
        return real(x, y)

    monkeypatch.setattr(search, "_to", recording_to)
    acc = search.held_out_accuracy()
    assert 0.0 <= acc <= 1.0
    assert sorted(v for b in seen for v in b) == sorted(_labels(search.data.held_out))  # the whole split
    assert_batches_mix_classes(seen)


def test_tfnas_arch_steps_draw_class_mixed_held_out_batches(tmp_path, tiny_space, sorted_folder):
    """``_held_batch`` (the architecture steps' batches) walks a seeded permutation of the held-out split."""
    search = _tfnas_search(tmp_path, tiny_space, sorted_folder)
    passes = [[[int(v) for v in search._held_batch(cycle * search.held_batches + b)[1]]
               for b in range(search.held_batches)] for cycle in range(2)]  # fmt: skip
    for batches in passes:
        assert sorted(v for b in batches for v in b) == sorted(_labels(search.data.held_out))
        assert_batches_mix_classes(batches)
    assert passes[0] != passes[1]  # a fresh order each pass over the split


# ---- DARTS ------------------------------------------------------------------------------------------------------


def test_darts_arch_steps_read_class_mixed_validation_batches(tmp_path, sorted_folder, monkeypatch):
    """The DARTS family's architecture steps (and the Hessian diagnostic, on the same batch) read the
    held-out split through a shuffled loader, so their batch-statistics BNs see mixed classes."""
    import tfnas.darts.search as darts_search

    cfg = {
        "space": "s0",
        "method": {"name": "darts_1st"},
        "supernet": {"C": 8, "num_cells": 3},
        "data": {"source": str(sorted_folder), "resolution": 8, "batch_size": BATCH, "held_out_fraction": 0.5},
        "search": {"epochs": 2, "a_optimizer": {"name": "adam", "lr": 0.01}},
    }
    search = darts_search.DartsSearch(cfg, tmp_path / "run", show_progress=False)
    assert _labels(search.data.held_out) == sorted(_labels(search.data.held_out))
    seen: list[list[int]] = []

    def recording_arch_step(model, method, a_opt, train_batch, val_batch, *args, **kwargs):
        seen.append([int(v) for v in val_batch[1]])
        return {}

    monkeypatch.setattr(darts_search, "arch_step", recording_arch_step)
    monkeypatch.setattr(search, "weight_step", lambda x, y, p: (0.0, 0.0))
    search.run()
    per_epoch = search.steps_per_epoch
    assert per_epoch == len(search.data.held_out) // BATCH and len(seen) == 2 * per_epoch
    assert_batches_mix_classes(seen)
    assert seen[:per_epoch] != seen[per_epoch:]  # reshuffled each epoch
