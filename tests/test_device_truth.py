"""Device truth: identities tell devices apart, timings refuse foreign tables, validate and lut: auto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profilers.device import compare, describe_device, isa_class, parse_cpu
from profilers.timing import Measurement
from tests.test_latency_table import make_table
from tfnas.cli import main
from tfnas.errors import LatencyTableError
from tfnas.latency.table import open_table, require_this_device
from tfnas.latency.validate import Validation, kendall_tau, write_outputs
from tfnas.mbv2.keys import SpaceNeeds
from tfnas.mbv2.select import choose_table
from tfnas.mbv2.validate import validate_table

GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2596.130
cache size\t: 1024 KB
flags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse
"""
MILAN = GENOA.replace("model\t\t: 17", "model\t\t: 1").replace(
    " avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16", ""
)
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp sve i8mm bf16
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""
LSCPU = """Architecture:            x86_64
Vendor ID:               AuthenticAMD
Model name:              AMD EPYC
CPU family:              25
Model:                   17
L1d cache:               64 KiB (2 instances)
L2 cache:                2 MiB (2 instances)
L3 cache:                32 MiB (1 instance)
"""


def fingerprint(cpu: dict, **over) -> dict:
    base = {
        "identity_version": 2,
        **cpu,
        "cpu_count": 2,
        "threads": 1,
        "runtime": "onnxruntime",
        "runtime_version": "1.32.0",
        "provider": "CPUExecutionProvider",
        "batch": 1,
        "resolution": 224,
        "precision": "fp32",
        "platform": "Linux",
        "python": "3.11",
    }
    return {**base, **over}


def test_x86_identity_reads_isa_family_and_caches():
    genoa = parse_cpu(GENOA, LSCPU, machine="x86_64")
    assert genoa["cpu_vendor"] == "AuthenticAMD" and (genoa["cpu_family"], genoa["cpu_model_id"]) == ("25", "17")
    assert {"avx2", "fma", "avx512f", "avx512bw", "avx512-vnni", "avx512-bf16"} <= set(genoa["cpu_isa"])
    assert genoa["cpu_cache_kb"] == {"l1d": 64, "l2": 2048, "l3": 32768}
    assert isa_class(genoa) == "avx512"
    milan = parse_cpu(MILAN, machine="x86_64")
    assert "avx512f" not in milan["cpu_isa"] and isa_class(milan) == "avx2"
    assert milan["cpu_model"] == genoa["cpu_model"] == "AMD EPYC"  # the name alone cannot tell them apart


def test_arm_identity_reads_neon_sve_dotprod():
    arm = parse_cpu(GRAVITON, machine="aarch64")
    assert arm["cpu_arch"] == "arm64" and arm["cpu_vendor"] == "0x41" and arm["cpu_model_id"] == "0xd40"
    assert {"neon", "dotprod", "sve", "i8mm", "bf16"} <= set(arm["cpu_isa"])
    assert isa_class(arm) == "sve"


def test_compare_same_informational_and_identity_changes():
    genoa = fingerprint(parse_cpu(GENOA, machine="x86_64"))
    assert compare(genoa, dict(genoa)).same_device
    info = compare(genoa, {**genoa, "cpu_mhz": 3100, "cpu_count": 64, "platform": "other"})
    assert info.same_device and info.identity == [] and len(info.info) == 3
    milan = fingerprint(parse_cpu(MILAN, machine="x86_64"))
    other = compare(genoa, milan)
    assert not other.same_device
    assert any(d.startswith("cpu_isa:") for d in other.identity) and any("cpu_model_id" in d for d in other.identity)
    threads = compare(genoa, {**genoa, "threads": 2})
    assert not threads.same_device and threads.identity == ["threads: table 1, here 2"]


def test_table_without_identity_loads_with_a_note():
    old = fingerprint({"cpu_model": "AMD EPYC"})
    old.pop("identity_version")
    match = compare(old, fingerprint(parse_cpu(GENOA, machine="x86_64")))
    assert not match.verifiable and not match.same_device and match.identity == []
    assert "cannot be verified" in match.describe()
    assert "ISA not recorded" in describe_device(old)


def foreign(table):
    table.fingerprint["cpu_isa"] = ["avx2", "fma"]  # this machine, seen as the other class of host
    table.fingerprint["cpu_family"] = "23"
    return table


def test_measure_and_calibrate_refuse_a_foreign_table_and_the_flag_overrides(
    tiny_space, tiny_space_dict, tmp_path, capsys
):
    import yaml

    path = foreign(make_table(tiny_space)).save(tmp_path / "foreign.json")
    table = open_table(path)
    with pytest.raises(LatencyTableError, match=r"(?s)another device.*\n  cpu_isa: table \['avx2', 'fma'\]"):
        require_this_device(table, "measuring")
    assert require_this_device(table, "measuring", allow_foreign=True).identity
    arch = tmp_path / "arch.json"
    from tfnas.mbv2.arch import Architecture

    doc = Architecture.uniform(tiny_space, "k3_e6_se").to_dict()
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_space_dict))
    doc["space"] = str(tmp_path / "tiny.yaml")
    arch.write_text(json.dumps(doc))
    for argv in (
        ["measure", str(arch), "--lut", str(path)],
        ["calibrate", "--lut", str(path), "--space", str(tmp_path / "tiny.yaml"), "--in-place"],
    ):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "another device" in err and "--allow-foreign-table" in err, err


def test_validate_end_to_end_on_a_tiny_space_writes_json_and_plot(tiny_space, tmp_path):
    table = make_table(tiny_space)
    table.protocol = {"statistic": "p10"}
    result = validate_table(table, tiny_space, n=4, rounds=2, progress=False)
    assert result.verdict in ("holds", "does-not-hold", "host-too-noisy")
    assert result.networks == 4 and len(result.pass_a_ms) == len(result.pass_b_ms) == 4
    assert all(m > 0 for m in result.measured_ms) and "p10" in result.statistic
    write_outputs(result, tmp_path / "v.json", tmp_path / "v.png")
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["verdict"] == result.verdict and set(doc["table"]) >= {"mape", "kendall_tau", "within_5", "ratio"}
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
    # a figure outside its two passes' range (seen in CI: steady rounds of both passes) still plots
    result.measured_ms = [max(a, b) * 1.1 for a, b in zip(result.pass_a_ms, result.pass_b_ms)]
    write_outputs(result, tmp_path / "w.json", tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def _fake_rounds(factor_a: float, factor_b: float):
    """Rounds whose measured latency is the table's prediction times a factor per pass."""
    from tfnas.mbv2.predict import predict

    def rounds_fn(archs, rounds):
        out = []
        for arch in archs:
            p = predict(arch, rounds_fn.table)
            ms = [p * (factor_a if r < rounds // 2 else factor_b) for r in range(rounds)]
            out.append([Measurement(m, 0, 0, 10, False, 10, value_ms=m, statistic="p10") for m in ms])
        return out

    return rounds_fn


@pytest.mark.parametrize(
    ("a", "b", "verdict"), [(1.01, 1.02, "holds"), (1.5, 1.5, "does-not-hold"), (1.0, 1.3, "host-too-noisy")]
)
def test_validate_verdict_weighs_the_error_against_the_noise_floor(tiny_space, a, b, verdict):
    table = make_table(tiny_space)
    fn = _fake_rounds(a, b)
    fn.table = table
    result = validate_table(table, tiny_space, n=6, rounds=4, rounds_fn=fn)
    assert result.verdict == verdict, result.reason
    assert result.noise_floor["mape"] == pytest.approx(abs(a - b) / b * 100, rel=1e-6)


def test_validate_does_not_time_a_foreign_table(tiny_space):
    def never(archs, rounds):
        raise AssertionError("timed a foreign table")

    result = validate_table(foreign(make_table(tiny_space)), tiny_space, rounds_fn=never)
    assert result.verdict == "foreign" and not result.measured_ms


def test_kendall_tau():
    assert kendall_tau([1, 2, 3], [2, 4, 9]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def _ok(table) -> Validation:
    return Validation(table.source, "", True, "", verdict="holds")


def _bad(table) -> Validation:
    return Validation(table.source, "", True, "", verdict="does-not-hold")


def test_lut_auto_takes_a_matching_shipped_table(tiny_space, tmp_path):
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    shipped.mkdir()
    mine = make_table(tiny_space)
    mine.calibration = {"scale": 1.0, "offset_ms": 0.0}
    foreign(make_table(tiny_space)).save(shipped / "a_foreign.json")
    mine.save(shipped / "b_mine.json")

    def build(path: Path):
        raise AssertionError("profiled although a matching table was shipped")

    choice = choose_table(tiny_space, 32, shipped=shipped, cache=cache, validate_fn=_ok, build_fn=build, say=print)
    assert choice.how == "shipped" and choice.path.name == "b_mine.json"


def test_lut_auto_profiles_when_no_table_is_of_this_device_or_none_holds(tiny_space, tmp_path):
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    shipped.mkdir()
    foreign(make_table(tiny_space)).save(shipped / "foreign.json")
    mine = make_table(tiny_space)
    mine.calibration = {"scale": 1.0, "offset_ms": 0.0}
    mine.save(shipped / "mine_but_wrong.json")
    built: list[Path] = []
    said: list[str] = []
    choice = choose_table(
        tiny_space, 32, shipped=shipped, cache=cache, validate_fn=_bad, build_fn=built.append, say=said.append
    )
    assert choice.how == "profiled" and built == [choice.path] and choice.path.parent == cache
    assert any("not used" in s for s in said) and any("profiling it" in s for s in said)


def test_calibrate_never_rewrites_the_users_table_unasked_and_keeps_the_previous_fit(tiny_space, tmp_path, capsys):
    from tfnas.mbv2.calibrate import calibrate
    from tfnas.mbv2.predict import predict

    path = make_table(tiny_space).save(tmp_path / "lut.json")
    before = path.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--lut", str(path)])
    assert exc.value.code == 2 and "--in-place" in capsys.readouterr().err and path.read_bytes() == before
    table = open_table(path, SpaceNeeds(tiny_space))
    calibrate(table, tiny_space, n=4, measure_fn=lambda a: 1.2 * predict(a, table, calibrated=False), progress=False)
    first = dict(table.calibration)
    calibrate(table, tiny_space, n=4, measure_fn=lambda a: 1.5 * predict(a, table, calibrated=False), progress=False)
    history = table.meta["calibration_history"]
    assert len(history) == 1 and history[0]["scale"] == pytest.approx(first["scale"]) and "replaced" in history[0]
    assert table.calibration["scale"] != pytest.approx(first["scale"])


def test_the_closed_measured_loop_refuses_a_table_of_another_device(tiny_space, tmp_path):
    """search.measure_final re-aims on timings of this machine: with a foreign table it would chase the wrong device."""
    from tests.test_search_tfnas import tiny_config
    from tfnas.mbv2.search.searcher import TFNASSearch

    cfg = tiny_config(tmp_path, tiny_space, measure_final=True)
    cfg["target_ms"] = 1.0  # feasible (0.29 .. 3.55 ms): an infeasible one is reported first
    lut = Path(cfg["lut"])
    doc = json.loads(lut.read_text())
    doc["fingerprint"]["cpu_isa"] = ["avx2", "fma"]
    lut.write_text(json.dumps(doc))
    with pytest.raises(LatencyTableError, match="(?s)measure_final.*another device|another device.*measure_final"):
        TFNASSearch(cfg, tmp_path / "run")


def test_lut_auto_rescales_a_matching_table_to_the_hosts_speed_now(tiny_space, tmp_path):
    """A quick validation that measures 8% above the predictions (a drifted host) rescales the fit, in a copy."""
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    shipped.mkdir()
    mine = make_table(tiny_space)
    mine.calibration = {"scale": 1.0, "offset_ms": 0.1, "ms_per_mweight": 0.2}
    mine.save(shipped / "mine.json")
    before = (shipped / "mine.json").read_bytes()

    def slow_host(table):  # every network 8% slower than predicted: the shape holds, the speed moved
        predicted = [1.0, 2.0, 3.0, 4.0]
        measured = [1.08 * p for p in predicted]
        return Validation(
            table.source, "", True, "", verdict="does-not-hold", predicted_ms=predicted, measured_ms=measured,
            table={"ratio": 1.08, "mape": 7.4, "kendall_tau": 1.0}, noise_floor={"mape": 1.0},
        )  # fmt: skip

    choice = choose_table(tiny_space, 32, shipped=shipped, cache=cache, validate_fn=slow_host, say=print)
    assert choice.how == "shipped" and choice.path.parent == cache and "x1.080" in choice.note
    copy = open_table(choice.path)
    assert copy.calibration["scale"] == pytest.approx(1.08) and copy.calibration["offset_ms"] == pytest.approx(0.108)
    assert copy.meta["calibration_history"][-1]["scale"] == 1.0
    assert (shipped / "mine.json").read_bytes() == before  # the shipped table is never rewritten
