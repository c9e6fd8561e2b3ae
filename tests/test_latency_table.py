"""LUT loading checks (shape, missing entries, corruption, fingerprint) and alignment-aware lookups."""

from __future__ import annotations

import json
import math

import pytest

from profilers.fingerprint import current_fingerprint
from profilers.lut import LatencyTable
from tfnas.errors import LatencyTableError
from tfnas.latency.table import FingerprintWarning, Lookup, WidthGrid, make_grid, open_table, table_grid
from tfnas.mbv2.keys import SpaceNeeds, space_signatures
from tfnas_base.errors import UserError

GRID = WidthGrid("sparse", align=4, block=16, intervals=4)


def synthetic_latency(key: str, width: int | None) -> float:
    """Aligned widths: a staircase of the padded width; others: a slower line (like ORT CPU)."""
    base = 0.01 + 0.001 * (len(key) % 7)
    if width is None:
        return base
    if width % 4 == 0:
        return base + 0.002 * math.ceil(width / 16) * 16
    return base + 0.005 * width


def make_table(space, grid: WidthGrid = GRID, resolution: int | None = None, batch: int = 1, fn=synthetic_latency):
    res = resolution or space.resolution
    fp = current_fingerprint(threads=1, batch=batch, resolution=res)
    table = LatencyTable(space.name, fp, {"warmup": 1}, meta={"bundle_meta": {"grid": grid.to_dict()}})
    for sig in space_signatures(space, res):
        widths = [None] if sig.width_range is None else grid.widths(*sig.width_range)
        lat = [fn(sig.key, w) for w in widths]
        n = len(widths)
        table.set_entry(sig.key, widths, lat, [0.0] * n, [0.01] * n, [False] * n, [10] * n)
    table.complete = True
    return table


@pytest.fixture
def lut_path(tiny_space, tmp_path):
    return make_table(tiny_space).save(tmp_path / "tiny.json")


def test_sparse_grid_covers_both_classes_and_bounds():
    for lo, hi in [(16, 32), (32, 64), (96, 192), (768, 1536)]:
        ws = GRID.widths(lo, hi)
        assert ws == sorted(set(ws)) and ws[0] == lo and ws[-1] == hi
        assert any(w % 4 for w in ws) and sum(w % 4 == 0 for w in ws) >= 2
    assert make_grid("dense").widths(10, 14) == [10, 11, 12, 13, 14]
    with pytest.raises(LatencyTableError, match="unknown width grid"):
        make_grid("fancy")


def test_grid_defaults_follow_the_precision_and_yield_to_explicit_options():
    # fp32 pads a multiple of 4 to the device's SIMD block (filled in from the table's fingerprint); int8 runs
    # multiples of 16 fastest and pads nothing (benchmarks/latency/results/int8_width_classes_avx2.json)
    fp32 = make_grid("sparse")
    assert (fp32.align, fp32.block, fp32.plan_block) == (4, None, 16)
    int8 = make_grid("sparse", "int8")
    assert (int8.align, int8.block) == (16, 16)
    assert all(int8.runtime_width(w) == w for w in (32, 48, 1536))
    assert make_grid("sparse", "int8", align=8).align == 8
    assert make_grid("sparse", block=8).block == 8
    assert make_grid("dense", "int8").align == 1
    with pytest.raises(LatencyTableError, match="precision 'fp16'"):
        make_grid("sparse", "fp16")


AVX2 = ["avx", "avx2", "fma", "sse4.2"]
AVX512 = AVX2 + ["avx512f", "avx512bw", "avx512vl"]


@pytest.mark.parametrize(
    "runtime, isa, block",
    [("onnxruntime", AVX2, 8), ("onnxruntime", AVX512, 16), ("onnxruntime", ["neon"], 16), ("torch", AVX2, 16)],
)
def test_an_fp32_table_pads_aligned_widths_to_its_own_devices_simd_block(tiny_space, runtime, isa, block):
    # measured on an AVX2 host: a multiple of 4 costs what its width padded to 8 costs (0.98-1.01x), not 16
    table = make_table(tiny_space, grid=make_grid("sparse"))  # block left to the device, as `tfnas profile` does
    table.fingerprint.update(runtime=runtime, cpu_isa=isa)
    grid = table_grid(table)
    assert grid.block == block
    assert grid.runtime_width(52) == (56 if block == 8 else 64) and grid.runtime_width(51) == 51
    assert Lookup(table).grid.block == block  # lookups and the weight-streaming term use the device's block
    explicit = make_table(tiny_space)  # a table whose grid names its block keeps it
    explicit.fingerprint.update(runtime=runtime, cpu_isa=isa)
    assert table_grid(explicit).block == GRID.block


def test_lookup_interpolates_within_alignment_class(tiny_space, lut_path):
    table = open_table(lut_path, SpaceNeeds(tiny_space), warn_device=True)
    look = Lookup(table)
    for sig in space_signatures(tiny_space):
        if sig.width_range is None:
            assert look(sig.key) == pytest.approx(synthetic_latency(sig.key, None))
            continue
        lo, hi = sig.width_range
        for w in range(lo, hi + 1):  # both synthetic curves are exactly representable
            assert look(sig.key, w) == pytest.approx(synthetic_latency(sig.key, w)), (sig.key, w)
        with pytest.raises(LatencyTableError, match="outside the measured range"):
            look(sig.key, hi + 1)


def test_shape_mismatch_is_an_error(tiny_space, lut_path):
    with pytest.raises(LatencyTableError, match="resolution 32.*needed batch 1, resolution 64"):
        open_table(lut_path, resolution=64)
    with pytest.raises(LatencyTableError, match="batch 1.*needed batch 8"):
        open_table(lut_path, batch=8)


def test_missing_entries_are_listed(tiny_space, tmp_path):
    table = make_table(tiny_space)
    gone = [k for k in table.keys() if k.startswith("ir|k5_e3")][:2]
    for k in gone:
        table.remove(k)
    path = table.save(tmp_path / "partial.json")
    with pytest.raises(LatencyTableError) as err:
        open_table(path, SpaceNeeds(tiny_space), warn_device=True)
    msg = str(err.value)
    assert "lacks 4 entries" in msg
    for k in gone:
        assert k in msg


def test_corrupted_and_truncated_tables(tmp_path, lut_path):
    text = lut_path.read_text()
    bad = tmp_path / "truncated.json"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match="not valid JSON"):  # the root of every user error
        open_table(bad)
    doc = json.loads(text)
    first = next(iter(doc["entries"]))
    doc["entries"][first]["latency_ms"][0] = -1
    bad.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="latency_ms"):
        open_table(bad)
    with pytest.raises(UserError, match="does not exist"):
        open_table(tmp_path / "nope.json")


def test_fingerprint_mismatch_warns_naming_fields(tiny_space, tmp_path, recwarn):
    table = make_table(tiny_space)
    table.fingerprint["cpu_isa"] = ["imaginary-simd"]
    path = table.save(tmp_path / "other.json")
    with pytest.warns(FingerprintWarning, match="cpu_isa.*imaginary-simd"):
        open_table(path, SpaceNeeds(tiny_space), warn_device=True)
    with pytest.warns(FingerprintWarning, match="threads"):
        open_table(path, SpaceNeeds(tiny_space), threads=2, warn_device=True)


def test_searches_and_validations_on_an_int8_table_derive_multiples_of_16(tiny_space):
    from tfnas.mbv2.calibrate import sample_archs
    from tfnas.mbv2.search.latency import LatencyModel

    table = make_table(tiny_space, grid=make_grid("sparse", "int8"))
    align = table_grid(table).align
    assert align == 16
    lat = LatencyModel(tiny_space, table, None, True, align)
    picked = {
        w
        for layer in range(len(lat.geometry))
        for op in range(len(lat.op_names))
        for w in lat.allowed_widths(layer, op)
    }
    assert picked and all(w % 16 == 0 for w in picked)
    for arch in sample_archs(tiny_space, 8, 0, None, align):  # what `tfnas validate` times
        for g, c in arch.active_layers():
            lo, _ = tiny_space.width_bounds(c.op, g.in_ch)
            assert c.width % 16 == 0 or c.width == lo
