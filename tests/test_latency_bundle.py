"""Profiling bundles: unique signatures, nothing missing, valid manifest, resumable, faithful graphs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from profilers.bundle import load_manifest
from tfnas.latency.bundle import export_graph, graph_name
from tfnas.latency.table import WidthGrid
from tfnas.mbv2.arch import Architecture
from tfnas.mbv2.bundle import write_bundle
from tfnas.mbv2.keys import arch_entries, build_signature_module, space_signatures

GRID = WidthGrid("sparse", align=4, block=16, intervals=2)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from tests.conftest import TINY_SPACE
    from tfnas.mbv2.space import space_from_dict

    space = space_from_dict(TINY_SPACE, "tiny.yaml")
    out = write_bundle(space, tmp_path_factory.mktemp("bundle"), batch=1, grid=GRID, progress=False)
    return space, out


def test_signatures_are_unique(tiny_space):
    keys = [s.key for s in space_signatures(tiny_space)]
    assert len(keys) == len(set(keys))
    # one signature per op and distinct layer geometry, plus stem, first block and head
    geos = {(g.in_ch, g.out_ch, g.stride, g.in_size, g.act) for g in tiny_space.layers()}
    assert len(keys) == 3 + len(geos) * len(tiny_space.ops)


def test_manifest_is_valid_and_covers_every_random_arch(bundle):
    space, out = bundle
    manifest = load_manifest(out)  # the device side's own validator
    assert manifest.space == "tiny" and manifest.batch == 1 and manifest.resolution == 32
    widths: dict[str, list] = {}
    for e in manifest.entries:
        widths.setdefault(e.key, []).append(e.width)
    rng = random.Random(0)
    for _ in range(30):
        for key, w in arch_entries(Architecture.random(space, rng)):
            assert key in widths, key
            if w is not None:
                assert min(widths[key]) <= w <= max(widths[key])
    for sig in space_signatures(space):
        if sig.width_range:
            assert (min(widths[sig.key]), max(widths[sig.key])) == sig.width_range
    assert manifest.meta["grid"]["name"] == "sparse"


def test_rerun_skips_existing_graphs(bundle):
    space, out = bundle
    import json

    write_bundle(space, out, batch=1, grid=GRID, progress=False)
    meta = json.loads((out / "manifest.json").read_text())["meta"]
    assert meta["exported_now"] == 0


def test_graph_names_are_unique_and_safe():
    a, b = graph_name("ir|k3_e3|in8", 5, 1), graph_name("ir|k3_e3|in8", 5, 2)
    assert a != b and "|" not in a and a.startswith("graphs/")


@pytest.mark.parametrize("kind", ["stem", "first", "layer", "head"])
def test_exported_graph_matches_pytorch_at_full_size(tiny_space, tmp_path, kind):
    """Graphs are traced at 8x8 and pinned to the deployment shape: outputs must match PyTorch."""
    import onnxruntime as ort

    sig = next(
        s for s in space_signatures(tiny_space) if s.kind == kind and (kind != "layer" or s.geometry.stride == 2)
    )
    width = None if sig.width_range is None else sig.width_range[0] + 1
    torch.manual_seed(0)
    export_graph(build_signature_module(tiny_space, sig, width), tmp_path / "g.onnx", sig.input_shape(2), strip=False)
    torch.manual_seed(0)
    ref_model = build_signature_module(tiny_space, sig, width).eval()
    x = torch.randn(sig.input_shape(2))
    with torch.no_grad():
        ref = ref_model(x).numpy()
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    assert [d for d in sess.get_inputs()[0].shape] == list(sig.input_shape(2))
    out = sess.run(None, {"input": x.numpy()})[0]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_bundle_graphs_carry_no_weights_and_the_device_generates_them(tiny_space, tmp_path):
    """Weights are stripped on the host (MBs, not GBs); a raw stripped graph fails loudly in the runtime,
    a materialised one runs; the same graph always gets the same weights."""
    import onnx
    import onnxruntime as ort

    from profilers.weights import GENERATED, materialize

    sig = next(s for s in space_signatures(tiny_space) if s.kind == "layer")
    width = sig.width_range[1]
    full, stripped = tmp_path / "full.onnx", tmp_path / "stripped.onnx"
    export_graph(build_signature_module(tiny_space, sig, width), full, sig.input_shape(1), strip=False)
    export_graph(build_signature_module(tiny_space, sig, width), stripped, sig.input_shape(1))
    assert stripped.stat().st_size < full.stat().st_size / 2
    model = onnx.load(str(stripped), load_external_data=False)
    assert any(e.value == GENERATED for i in model.graph.initializer for e in i.external_data)
    with pytest.raises(Exception, match="xternal data"):
        ort.InferenceSession(str(stripped), providers=["CPUExecutionProvider"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ready = materialize(stripped, tmp_path / "a")
    again = materialize(stripped, tmp_path / "b")
    assert ready.read_bytes() == again.read_bytes()
    sess = ort.InferenceSession(str(ready), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(sig.input_shape(1)).astype(np.float32)
    ref = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = sess.run(None, {"input": x})[0]
    assert out.shape == ref.shape and np.isfinite(out).all()
