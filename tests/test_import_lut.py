"""`tfnas import-lut`: official TF-NAS latency pickles read safely, mapped onto our signatures, predicted exactly.

The fixture's values are copied from the published GPU table (AberHu/TF-NAS latency_pkl/latency_gpu.pkl, MIT
licence); pickles are written at test time. No network, no GPU.
"""

from __future__ import annotations

import copy
import datetime
import json
import pickle
import random
from collections import OrderedDict
from pathlib import Path

import pytest

from profilers.device import compare
from profilers.lut import LatencyTable
from tfnas.cli import main
from tfnas.errors import LatencyTableError, UserError
from tfnas.latency.table import device_match, open_table, require_this_device
from tfnas.mbv2.arch import Architecture, LayerChoice
from tfnas.mbv2.keys import SpaceNeeds, arch_entries, fixed_signatures, layer_signature
from tfnas.mbv2.official import (
    DEVICES,
    convert,
    import_official,
    official_key,
    parse_official,
    read_official,
    split_base,
)
from tfnas.mbv2.predict import predict
from tfnas.mbv2.space import load_space

ROOT = Path(__file__).resolve().parents[1]
GPU_TABLE = ROOT / "latency_tables" / "tfnas_imagenet-official-titanrtx-b32-224.json"
CPU_TABLE = ROOT / "latency_tables" / "tfnas_imagenet-official-xeon6130-1t-b1-224.json"

# Published values (ms, batch 32, Titan RTX) of six keys: the range ends of the ops below, the widths the
# architecture uses, one interior neighbour pair (40, 48) and one of the published negative values (width 1).
FIXTURE = {
    "base": 1.985807514190674,
    "MBInvertedResBlock_112_16_0_24_k3_s2_relu": {
        1: -0.23309380454676498,
        32: 0.8011963367462158,
        40: 1.0357067584991455,
        48: 1.176710605621338,
        64: 1.5345187187194824,
    },
    "MBInvertedResBlock_56_24_48_40_k5_s2_swish": {
        96: 1.0400590896606445,
        150: 1.58114892244339,
        192: 1.9742631912231445,
    },
    "MBInvertedResBlock_28_40_0_80_k3_s2_swish": {
        160: 0.3814115524291992,
        200: 0.4800095558166504,
        320: 0.7604837417602539,
    },
    "MBInvertedResBlock_14_80_80_112_k5_s1_swish": {
        160: 0.38381290435791016,
        241: 0.38740357756614685,
        320: 0.4968855381011963,
    },
    "MBInvertedResBlock_14_112_112_192_k3_s2_swish": {
        224: 0.37806200981140137,
        300: 0.3787611722946167,
        448: 0.3842034339904785,
    },
    "MBInvertedResBlock_7_192_0_320_k5_s1_swish": {
        768: 0.32294464111328125,
        1000: 0.4545156955718994,
        1536: 0.7005598545074463,
    },
}
# One active layer per stage, reading the fixture's keys: (op, width).
ACTIVE = [("k3_e3", 48), ("k5_e6_se", 150), ("k3_e6", 200), ("k5_e3_se", 241), ("k3_e3_se", 300), ("k5_e6", 1000)]


@pytest.fixture(scope="module")
def space():
    return load_space("tfnas_imagenet")


def write_pickle(path: Path, data: object, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def as_official(d: dict) -> OrderedDict:
    """The official file's shape: an OrderedDict of base and OrderedDicts of widths."""
    return OrderedDict((k, v if k == "base" else OrderedDict(v)) for k, v in d.items())


def fixture_arch(space) -> Architecture:
    """Depth 1 everywhere; layers beyond the depth are valid choices that cost nothing."""
    stages = []
    for s, st in enumerate(space.stages):
        op, width = ACTIVE[s]
        stages.append([LayerChoice(op, width)] + [LayerChoice("k3_e3", 2 * space.stages[s].out)] * (st.layers - 1))
    return Architecture(space, stages, [1] * len(space.stages), 224).validate()


def official_rule(space, arch: Architecture, official: dict) -> float:
    """train_search.py's get_lookup_latency: base + each active layer's entry at its mid width."""
    return official["base"] + sum(
        official[official_key(space, layer_signature(space, g, c.op))][c.width] for g, c in arch.active_layers()
    )


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- the conversion -------------------------------------------------------------------------------------------


def test_fixture_prediction_equals_the_official_rule(space, tmp_path):
    path = write_pickle(tmp_path / "latency_gpu_part.pkl", as_official(FIXTURE))
    conv = import_official(path, space, device="titanrtx")
    arch = fixture_arch(space)
    assert [official_key(space, layer_signature(space, g, c.op)) for g, c in arch.active_layers()] == list(FIXTURE)[1:]
    rule = official_rule(space, arch, FIXTURE)
    assert predict(arch, conv.table) == pytest.approx(rule, rel=1e-14, abs=0)
    assert predict(arch, conv.table, calibrated=False) == pytest.approx(rule, rel=1e-14, abs=0)
    # the fixed parts hold base exactly; every searchable entry keeps published values only, unrounded
    fixed = [conv.table.latency(sig.key) for sig in fixed_signatures(space, 224).values()]
    assert (fixed[0] + fixed[1]) + fixed[2] == FIXTURE["base"] and all(ms > 0 for ms in fixed)
    entry = conv.table.entry("ir|k3_e3|in16_out24|s2|112x112|relu")
    assert entry["widths"] == [32, 40, 48, 64]  # width 1 (-0.233 ms) lies outside [32, 64]: dropped
    assert entry["latency_ms"] == [FIXTURE["MBInvertedResBlock_112_16_0_24_k3_s2_relu"][w] for w in (32, 40, 48, 64)]
    assert entry["spread_ms"] == [0.0] * 4 and entry["noisy"] == [False] * 4  # unknown, said so in meta
    # an unpublished interior width is interpolated between its published neighbours, never invented
    k = FIXTURE["MBInvertedResBlock_112_16_0_24_k3_s2_relu"]
    arch.stages[0][0] = LayerChoice("k3_e3", 44)
    assert predict(arch, conv.table) == pytest.approx(rule - k[48] + (k[40] + k[48]) / 2, rel=1e-12)
    # what the conversion found
    assert conv.nonpositive_dropped == [("MBInvertedResBlock_112_16_0_24_k3_s2_relu", 1, -0.23309380454676498)]
    assert conv.gaps["ir|k3_e3|in16_out24|s2|112x112|relu"] == 33 - 4
    assert conv.missing_widths["ir|k3_e6|in16_out24|s2|112x112|relu"] == [128]  # e6 shares the key up to 8 x in
    assert not conv.complete and not conv.table.complete and conv.extra_keys == []
    assert conv.table.meta["source"]["published_as"] == "not the published file"
    # the table round-trips through JSON exactly
    saved = LatencyTable.load(conv.table.save(tmp_path / "t.json"))
    assert predict(fixture_arch(space), saved) == predict(fixture_arch(space), conv.table)


def test_missing_and_extra_keys_are_listed(space, tmp_path, capsys):
    """A full synthetic table in the official layout, one key removed and one unknown key added."""
    full = OrderedDict(base=2.0)
    for sig in space_layer_signatures(space):
        key = official_key(space, sig)
        bound = max(full.get(key, {}), default=0)
        hi = max(bound, sig.width_range[1])
        full[key] = OrderedDict((w, 0.01 * w + 0.1) for w in range(1, hi + 1))
    assert len(full) == 67  # base + the 66 official keys
    gone = "MBInvertedResBlock_28_40_0_40_k5_s1_swish"
    del full[gone]
    full["MBInvertedResBlock_28_40_0_40_k7_s1_swish"] = OrderedDict({1: 0.5, 2: 0.6})
    conv = convert(parse_official(full, "synthetic.pkl"), space, DEVICES["titanrtx"])
    assert list(conv.missing_keys) == [gone]
    assert conv.missing_keys[gone] == ["ir|k5_e3|in40_out40|s1|28x28|swish", "ir|k5_e6|in40_out40|s1|28x28|swish"]
    assert conv.extra_keys == ["MBInvertedResBlock_28_40_0_40_k7_s1_swish"]
    assert not conv.complete and any(gone in p for p in conv.problems())
    assert "extra key MBInvertedResBlock_28_40_0_40_k7_s1_swish" in conv.summary()

    # the CLI lists them and writes nothing, unless asked to
    src = write_pickle(tmp_path / "mine.pkl", full)
    out = tmp_path / "mine.json"
    rc, stdout, err = run_cli(capsys, "import-lut", src, "--out", out)
    assert rc == 2 and "not one of the published official tables" in err and "--device" in err
    rc, stdout, err = run_cli(capsys, "import-lut", src, "--device", "titanrtx", "--out", out)
    assert rc == 2 and not out.exists()
    assert f"missing key {gone}" in err and "extra key MBInvertedResBlock_28_40_0_40_k7_s1_swish" in stdout
    rc, stdout, err = run_cli(capsys, "import-lut", src, "--device", "titanrtx", "--out", out, "--allow-missing")
    assert rc == 0 and "INCOMPLETE" in stdout
    table = LatencyTable.load(out)
    assert table.complete is False and table.meta["official"]["extra_keys"] == conv.extra_keys
    assert table.meta["conversion"]["command"] == (
        f"tfnas import-lut mine.pkl --device titanrtx --out {out.as_posix()}"
    )
    with pytest.raises(LatencyTableError, match="lacks 4 entries"):  # 2 signatures x 2 range ends
        open_table(out, SpaceNeeds(space))
    rc, _, err = run_cli(capsys, "import-lut", src, "--device", "titanrtx", "--out", out, "--allow-missing")
    assert rc == 2 and "exists; pass --force" in err


def space_layer_signatures(space):
    from tfnas.mbv2.keys import space_signatures

    return [s for s in space_signatures(space, 224) if s.width_range is not None]


def test_a_nonpositive_value_inside_a_searchable_range_is_reported_not_clamped(space):
    data = copy.deepcopy(FIXTURE)
    data["MBInvertedResBlock_112_16_0_24_k3_s2_relu"][48] = -0.01
    conv = convert(parse_official(data, "bad.pkl"), space, DEVICES["titanrtx"])
    assert ("MBInvertedResBlock_112_16_0_24_k3_s2_relu", 48, -0.01) in conv.bad_values
    assert "ir|k3_e3|in16_out24|s2|112x112|relu" not in conv.table
    assert any("-0.01 ms at width 48" in p for p in conv.problems())


def test_base_split_sums_to_base_exactly():
    rng = random.Random(0)
    for base in [FIXTURE["base"], 9.356469964981079, *(rng.uniform(0.01, 100) for _ in range(2000))]:
        stem, first, head = split_base(base)
        assert (stem + first) + head == base and min(stem, first, head) > 0


# ---- reading safely ---------------------------------------------------------------------------------------------


class Plain:
    """A harmless custom class: still not plain data."""

    def __init__(self) -> None:
        self.ms = 1.0


class Payload:
    """Would create ``marker`` when unpickled by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_unpickler_refuses_code_and_never_runs_it(tmp_path):
    marker = tmp_path / "pwned"
    cases = {
        "os_system.pkl": (f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(), "os.system"),
        "eval.pkl": (f"cbuiltins\neval\n(S'open({str(marker)!r}, \"w\")'\ntR.".encode(), "builtins.eval"),
        "reduce.pkl": (
            pickle.dumps(OrderedDict(base=1.0, k=Payload(marker)), protocol=2),
            "getattr",
        ),  # Path.touch, via getattr
        "datetime.pkl": (pickle.dumps(OrderedDict(base=datetime.datetime(2020, 8, 12)), protocol=4), "datetime"),
        "custom.pkl": (pickle.dumps({"base": 1.0, "x": Plain()}, protocol=2), "Plain"),
    }
    for name, (raw, cls) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(LatencyTableError) as info:
            read_official(path)
        msg = str(info.value)
        assert name in msg and "refusing to unpickle" in msg and cls.split(".")[-1] in msg, msg
        assert not marker.exists()
    # the unrestricted unpickler would have run the first payload: the marker test is real
    pickle.loads(cases["reduce.pkl"][0])
    assert marker.exists()


def test_bad_files_are_refused_with_clear_errors(tmp_path, capsys):
    cases = {
        "list.pkl": (pickle.dumps([1.0, 2.0]), "got list"),
        "nobase.pkl": (pickle.dumps(OrderedDict(k=OrderedDict({1: 1.0}))), "no 'base' entry"),
        "strwidth.pkl": (pickle.dumps({"base": 1.0, "k": {"1": 1.0}}), "width '1' is not an integer"),
        "strms.pkl": (pickle.dumps({"base": 1.0, "k": {1: "fast"}}), "latency 'fast' is not a number"),
        "truncated.pkl": (pickle.dumps(as_official(FIXTURE))[:100], "is not a readable pickle"),
        "table.pkl": (GPU_TABLE.read_bytes()[:200], "looks like JSON"),
        "empty.pkl": (b"", "is empty"),
    }
    for name, (raw, expected) in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(LatencyTableError, match=expected):
            read_official(tmp_path / name)
    big = write_pickle(tmp_path / "big.pkl", as_official(FIXTURE))
    with pytest.raises(LatencyTableError, match="refused unread"):
        read_official(big, max_bytes=100)
    with pytest.raises(LatencyTableError, match="does not exist"):
        read_official(tmp_path / "nope.pkl")
    # the CLI prints them without a traceback (the one error root)
    rc, _, err = run_cli(capsys, "import-lut", tmp_path / "list.pkl", "--out", tmp_path / "x.json")
    assert rc == 2 and err.startswith("tfnas import-lut: error: ") and "Traceback" not in err
    assert issubclass(LatencyTableError, UserError)


# ---- the shipped tables -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [GPU_TABLE, CPU_TABLE], ids=["titanrtx", "xeon6130"])
def test_shipped_tables_load_and_predict_the_official_rule(space, path):
    table = open_table(path, SpaceNeeds(space))  # every entry the space needs, at every range end
    assert table.complete and table.calibration is None and table.meta["official"]["problems"] == []
    assert table.meta["source"]["licence"].startswith("MIT") and "AberHu/TF-NAS" in table.meta["source"]["repository"]
    assert len(table.meta["source"]["sha256"]) == 64 and table.meta["conversion"]["command"].startswith("tfnas import")
    base = table.meta["official"]["base_ms"]
    stem, first, head = (table.latency(s.key) for s in fixed_signatures(space, 224).values())
    assert (stem + first) + head == base
    doc = json.loads(path.read_text())["entries"]
    rng = random.Random(17)
    archs = [Architecture.uniform(space, "k3_e3", width="min"), Architecture.uniform(space, "k5_e6_se", width="max")]
    archs += [Architecture.random(space, rng) for _ in range(3)]
    for arch in archs:
        rule = base
        for key, width in arch_entries(arch):
            if width is not None:  # the official rule: base + each active layer's published value at its width
                rule += doc[key]["latency_ms"][doc[key]["widths"].index(width)]
        assert predict(arch, table) == pytest.approx(rule, rel=1e-13, abs=0)
    # no value <= 0 inside a searchable range; every published width of each range kept
    for key in table.keys():
        e = table.entry(key)
        assert min(e["latency_ms"]) > 0
        if e["widths"] != [None]:
            lo, hi = e["widths"][0], e["widths"][-1]
            assert e["widths"] == list(range(lo, hi + 1))


def _is_the_cpu_tables_cpu() -> bool:
    table = LatencyTable.load(CPU_TABLE)
    return not device_match(table).identity


@pytest.fixture
def arch_file(space, tmp_path):
    return Architecture.random(space, random.Random(3)).save(tmp_path / "arch.json")


def test_shipped_tables_are_foreign_here_predict_accepts_them(space, arch_file, tmp_path, capsys):
    for path, device in ((GPU_TABLE, "NVIDIA TITAN RTX"), (CPU_TABLE, "Xeon(R) Gold 6130")):
        if path == CPU_TABLE and _is_the_cpu_tables_cpu():
            continue  # a Skylake-SP host has the CPU table's identity (see latency_tables/README.md)
        table = LatencyTable.load(path)
        match = device_match(table)
        assert match.verifiable and match.identity and not match.same_device
        with pytest.raises(LatencyTableError, match="measured on another device") as info:
            require_this_device(table, "measuring")
        assert str(path) in str(info.value)
        # predict accepts it and says which device the number is for
        rc, out, _ = run_cli(capsys, "predict", "--lut", path, arch_file)
        assert rc == 0 and "predicted latency: " in out and device in out.split("on the table's device: ")[1]
        assert "this machine is not that device" in out
        # measure / calibrate / validate refuse it before timing anything
        batch = table.fingerprint["batch"]
        rc, _, err = run_cli(capsys, "measure", arch_file, "--lut", path, "--batch", batch)
        assert rc == 2 and "measured on another device" in err and str(path) in err
        assert any(line.split(":")[0] in err for line in match.identity)  # names the differing identity
        rc, _, err = run_cli(capsys, "calibrate", "--lut", path, "--samples", 3, "--out", tmp_path / "c.json")
        assert rc == 2 and "measured on another device" in err and not (tmp_path / "c.json").exists()
        rc, out, _ = run_cli(capsys, "validate", "--lut", path, "--samples", 3, "--out", tmp_path / "v.json", "--quiet")
        assert rc == 1 and "verdict: FOREIGN" in out and device in out


def test_search_accepts_the_gpu_table_but_not_measure_final(space, tmp_path):
    from tfnas.mbv2.search.build import build_latency_model
    from tfnas.mbv2.search.config import resolve_config
    from tfnas.mbv2.search.searcher import TFNASSearch

    cfg = {"space": "tfnas_imagenet", "lut": str(GPU_TABLE), "target_ms": 15.0}
    lat = build_latency_model(resolve_config(cfg), space)
    fast, slow = lat.feasible_range()
    assert fast < 15.0 < slow
    with pytest.raises(LatencyTableError, match="another device than this machine, so search.measure_final"):
        TFNASSearch({**cfg, "search": {"measure_final": True}}, tmp_path / "run")


def test_runtime_version_is_this_machines_for_torch_tables():
    """A Titan RTX host with another torch than the table's 1.1 must not pass as the table's device."""
    import torch

    from tfnas.latency.table import here_fingerprint

    table = LatencyTable.load(GPU_TABLE)
    here = here_fingerprint(table.fingerprint)
    assert here["runtime_version"] == torch.__version__.split("+")[0] != table.fingerprint["runtime_version"]
    titan_host = {**here, "gpu_name": "NVIDIA TITAN RTX", "gpu_compute_capability": "7.5"}
    differ = [line.split(":")[0] for line in compare(table.fingerprint, titan_host).identity]
    assert differ == ["runtime_version"]
