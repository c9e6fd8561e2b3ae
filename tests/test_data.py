"""Data: generated images are deterministic and learnable; CIFAR/ImageFolder readers; loaders."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from tfnas.data import (
    Cifar10Folder,
    GeneratedImages,
    build_datasets,
    make_loader,
    restricted_pickle_load,
    set_loader_epoch,
)
from tfnas.errors import ConfigError


def test_generated_is_deterministic_and_seed_dependent():
    a = GeneratedImages(20, num_classes=5, resolution=16, seed=3)
    b = GeneratedImages(20, num_classes=5, resolution=16, seed=3)
    c = GeneratedImages(20, num_classes=5, resolution=16, seed=4)
    x, y = a[7]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(x, b[7][0]) and y == b[7][1]
    assert not torch.equal(x, c[7][0])
    assert sorted({a[i][1] for i in range(20)}) == list(range(5))
    with pytest.raises(IndexError):
        a[20]


def test_generated_is_learnable():
    torch.manual_seed(0)
    bundle = build_datasets("generated", resolution=16, num_samples=600, held_out_fraction=0.25)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    for _ in range(2):
        for x, y in make_loader(bundle.train, 32, shuffle=True):
            loss = nn.functional.cross_entropy(model(x), y)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():  # plain SGD: torch.optim's first use imports dynamo (seconds)
                for p in model.parameters():
                    p -= 0.1 * p.grad
    correct = total = 0
    with torch.no_grad():
        for x, y in make_loader(bundle.test, 50, shuffle=False, drop_last=False):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    assert correct / total > 0.3  # chance is 0.1


def test_build_generated_bundle_split_is_disjoint_and_deterministic():
    b1 = build_datasets("generated", resolution=8, num_classes=4, num_samples=100, held_out_fraction=0.3, seed=1)
    b2 = build_datasets("generated", resolution=8, num_classes=4, num_samples=100, held_out_fraction=0.3, seed=1)
    assert (b1.num_classes, b1.in_channels, b1.resolution) == (4, 3, 8)
    assert len(b1.train) == 70 and len(b1.held_out) == 30 and len(b1.test) == 25
    assert set(b1.train.indices).isdisjoint(b1.held_out.indices)
    assert b1.held_out.indices == b2.held_out.indices
    assert build_datasets("generated", resolution=8, num_samples=10, held_out_fraction=0.0).held_out is None


def test_loader_order_is_reproducible_per_epoch():
    ds = GeneratedImages(40, num_classes=4, resolution=4)

    def labels_of_epoch(epoch: int) -> list[int]:
        loader = make_loader(ds, 8, shuffle=True, seed=5)
        set_loader_epoch(loader, epoch)
        return [int(v) for _, y in loader for v in y]

    first = make_loader(ds, 8, shuffle=True, seed=5)
    epoch0 = [int(v) for _, y in first for v in y]
    epoch1 = [int(v) for _, y in first for v in y]
    assert epoch0 != epoch1  # a new order each epoch
    assert labels_of_epoch(0) == epoch0 and labels_of_epoch(1) == epoch1  # resume reproduces
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(ds, 64, shuffle=True)


def _fake_cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]


def _write_bin(folder, name, data, labels):
    rec = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
    (folder / name).write_bytes(rec.tobytes())


def test_cifar_binary_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        _write_bin(folder, f"data_batch_{i}.bin", *_fake_cifar_arrays(3, i))
    data, labels = _fake_cifar_arrays(4, 99)
    _write_bin(folder, "test_batch.bin", data, labels)
    train = Cifar10Folder(tmp_path, train=True)
    test = Cifar10Folder(tmp_path, train=False, resolution=16)
    assert len(train) == 15 and len(test) == 4
    x, y = test[2]
    assert x.shape == (3, 16, 16) and y == labels[2]
    raw = Cifar10Folder(tmp_path, train=False)[2][0]
    expected = (torch.from_numpy(data[2].reshape(3, 32, 32).astype(np.float32)) / 255 - 0.4914) / 0.2470
    assert torch.allclose(raw[0], expected[0], atol=1e-5)
    bundle = build_datasets(tmp_path, resolution=32, held_out_fraction=0.2)
    assert bundle.num_classes == 10 and len(bundle.train) == 12 and len(bundle.test) == 4
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)  # truncated file
    with pytest.raises(ConfigError, match="test_batch.bin.*truncated"):
        Cifar10Folder(tmp_path, train=False)


def test_cifar_python_format(tmp_path):
    for i in range(1, 6):
        data, labels = _fake_cifar_arrays(2, i)
        blob = pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}, protocol=2)
        # The official files were pickled with numpy<2, whose module is numpy.core.
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (tmp_path / f"data_batch_{i}").write_bytes(blob)
    data, labels = _fake_cifar_arrays(3, 7)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": labels}, f)  # newer protocol, str keys
    train, test = Cifar10Folder(tmp_path, train=True), Cifar10Folder(tmp_path, train=False)
    assert len(train) == 10 and train.format == "py"
    assert [test[i][1] for i in range(3)] == labels


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path):
    for i in range(1, 6):
        with open(tmp_path / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": _Evil(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(ConfigError, match="refusing to load global") as exc:
        Cifar10Folder(tmp_path, train=True)
    assert "data_batch_1" in str(exc.value)
    (tmp_path / "evil").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(ConfigError, match="builtins"):
        restricted_pickle_load(tmp_path / "evil")


def test_missing_cifar_and_bad_paths_name_what_was_expected(tmp_path):
    with pytest.raises(ConfigError) as exc:
        Cifar10Folder(tmp_path, train=True)
    assert str(tmp_path) in str(exc.value) and "data_batch_1.bin" in str(exc.value)
    assert "data_batch_1," in str(exc.value)
    with pytest.raises(ConfigError, match="does not exist"):
        build_datasets(tmp_path / "nope", resolution=32)
    with pytest.raises(ConfigError, match="ImageFolder"):
        build_datasets(tmp_path, resolution=32)


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for cls in ("cat", "dog", "eel"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    bundle = build_datasets(tmp_path, resolution=16, held_out_fraction=0.25)
    assert bundle.num_classes == 3 and len(bundle.train) == 9 and len(bundle.held_out) == 3
    assert len(bundle.test) == 6
    x, y = bundle.test[5]
    assert x.shape == (3, 16, 16) and y == 2
    with pytest.raises(ConfigError, match="num_classes=5"):
        build_datasets(tmp_path, resolution=16, num_classes=5)


def test_an_empty_class_folder_is_a_clear_error(tmp_path):
    from PIL import Image

    from tfnas.data.folder import ImageFolderDataset

    (tmp_path / "cat").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "cat" / "0.png")
    (tmp_path / "dog").mkdir()  # no images
    with pytest.raises(ConfigError, match=r"image folder .*remove empty or hidden class folders"):
        ImageFolderDataset(tmp_path, resolution=8)
