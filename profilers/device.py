"""Device identity: what tells two devices apart, read without torch.

Two cloud VMs that both call their CPU "AMD EPYC" ran the same ONNX network 2-3x
apart: one had AVX-512, the other AVX2 only. The model name says nothing; what
selects the runtime's kernels (the ISA features) and sets their speed (vendor,
family/model, caches, cores, clock) does. Fields are classed:

- *identity*: a mismatch means another device, and a table from it must not be
  trusted here (vendor, family, model, architecture, ISA features; GPU name and
  compute capability; runtime, its version, provider, threads, shape, precision);
- *informational*: recorded and shown, never a reason to refuse (model name,
  stepping, caches, core count, clock, OS, Python, driver and CUDA versions).

A table written before identities existed has no ``cpu_isa``: it still loads,
with a note that its device cannot be verified.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IDENTITY_VERSION = 2

# The flags that select ONNX Runtime / oneDNN / TensorRT kernels; /proc/cpuinfo name -> our name.
X86_FEATURES: dict[str, str] = {
    "sse4_1": "sse4.1",
    "sse4_2": "sse4.2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx_vnni": "avx-vnni",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512dq": "avx512dq",
    "avx512_vnni": "avx512-vnni",
    "avx512_bf16": "avx512-bf16",
    "avx512_fp16": "avx512-fp16",
    "amx_tile": "amx-tile",
    "amx_bf16": "amx-bf16",
    "amx_int8": "amx-int8",
}
ARM_FEATURES: dict[str, str] = {
    "asimd": "neon",
    "asimdhp": "neon-fp16",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "bf16": "bf16",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
}

# Identity fields of the fingerprint (a mismatch is another device). Shape and runtime fields included.
IDENTITY_FIELDS: tuple[str, ...] = (
    "cpu_arch",
    "cpu_vendor",
    "cpu_family",
    "cpu_model_id",
    "cpu_isa",
    "gpu_name",
    "gpu_compute_capability",
    "runtime",
    "runtime_version",
    "provider",
    "threads",
    "batch",
    "resolution",
    "precision",
)
INFO_FIELDS: tuple[str, ...] = (
    "cpu_model",
    "cpu_stepping",
    "cpu_cache_kb",
    "cpu_count",
    "cpu_mhz",
    "gpu_memory_gb",
    "gpu_driver",
    "cuda_version",
    "tensorrt_version",
    "platform",
    "python",
)


def _kv_blocks(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per processor block (``key : value`` lines)."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, sep, value = line.partition(":")
        if sep:
            blocks[-1].setdefault(key.strip().lower(), value.strip())
    return [b for b in blocks if b]


def _lscpu_fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


_SIZE = re.compile(r"([\d.]+)\s*([KMG])i?B?", re.IGNORECASE)


def _size_kb(text: str) -> int | None:
    m = _SIZE.search(text or "")
    if not m:
        return None
    mult = {"k": 1, "m": 1024, "g": 1024 * 1024}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_cpu(cpuinfo: str, lscpu: str = "", machine: str | None = None) -> dict[str, Any]:
    """CPU identity from the texts of ``/proc/cpuinfo`` and (optionally) ``lscpu``; pure, for tests."""
    blocks = _kv_blocks(cpuinfo)
    first = blocks[0] if blocks else {}
    ls = _lscpu_fields(lscpu)
    machine = machine or ls.get("architecture") or platform.machine()
    arm = machine.lower() in ("aarch64", "arm64") or "cpu implementer" in first
    flags = set((first.get("flags") or first.get("features") or "").split())
    table = ARM_FEATURES if arm else X86_FEATURES
    isa = sorted(ours for theirs, ours in table.items() if theirs in flags)
    if arm:
        vendor = first.get("cpu implementer") or ls.get("vendor id", "unknown")
        family = first.get("cpu architecture") or ls.get("architecture", "")
        model_id = first.get("cpu part") or ls.get("model", "")
        stepping = first.get("cpu revision") or ls.get("stepping", "")
        name = ls.get("model name") or first.get("model name") or f"ARM part {model_id}"
    else:
        vendor = first.get("vendor_id") or ls.get("vendor id", "unknown")
        family = first.get("cpu family") or ls.get("cpu family", "")
        model_id = first.get("model") or ls.get("model", "")
        stepping = first.get("stepping") or ls.get("stepping", "")
        name = first.get("model name") or ls.get("model name", "unknown")
    caches = {
        level: kb
        for level, key in (("l1d", "l1d cache"), ("l2", "l2 cache"), ("l3", "l3 cache"))
        if (kb := _size_kb(ls.get(key, ""))) is not None
    }
    if not caches and first.get("cache size"):
        kb = _size_kb(first["cache size"])
        if kb is not None:
            caches["reported"] = kb
    mhz = ls.get("cpu max mhz") or first.get("cpu mhz") or ""
    try:
        mhz_val: float | None = round(float(mhz))
    except ValueError:
        mhz_val = None
    return {
        "cpu_arch": "arm64" if arm else ("x86_64" if machine.lower() in ("x86_64", "amd64") else machine.lower()),
        "cpu_vendor": vendor,
        "cpu_family": str(family),
        "cpu_model_id": str(model_id),
        "cpu_stepping": str(stepping),
        "cpu_model": name,
        "cpu_isa": isa,
        "cpu_cache_kb": caches,
        "cpu_mhz": mhz_val,
    }


def isa_class(fp: Mapping[str, Any]) -> str:
    """A short name of the ISA class that selects the runtime's CPU kernels: ``avx512``, ``avx2``, ``neon``..."""
    isa = set(fp.get("cpu_isa") or ())
    for name, needs in (
        ("amx", {"amx-tile"}),
        ("avx512", {"avx512f", "avx512bw"}),
        ("avx2", {"avx2", "fma"}),
        ("sse4", {"sse4.2"}),
        ("sve", {"sve"}),
        ("neon", {"neon"}),
    ):
        if needs <= isa:
            return name
    return "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _sys_caches() -> dict[str, int]:
    """Per-core cache sizes from sysfs (what lscpu reads), without running lscpu."""
    out: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.is_dir() else []:
        level, kind, size = _read(idx / "level").strip(), _read(idx / "type").strip(), _read(idx / "size").strip()
        if kind == "Instruction" or not level or not size:
            continue
        kb = _size_kb(size)
        if kb is not None:
            out[f"l{level}" + ("d" if level == "1" else "")] = kb
    return out


def cpu_identity() -> dict[str, Any]:
    """This machine's CPU identity (Linux: /proc/cpuinfo + sysfs; elsewhere what ``platform`` knows)."""
    ident = parse_cpu(_read("/proc/cpuinfo"), machine=platform.machine())
    caches = _sys_caches()
    if caches:
        ident["cpu_cache_kb"] = caches
    if ident["cpu_model"] == "unknown":
        ident["cpu_model"] = platform.processor() or platform.machine() or "unknown"
    return ident


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class DeviceMatch:
    """How a table's fingerprint compares with this machine's."""

    identity: list[str] = field(default_factory=list)  # "field: table X, here Y" for identity fields
    info: list[str] = field(default_factory=list)  # the same for informational fields
    verifiable: bool = True  # False for tables written before device identities

    @property
    def same_device(self) -> bool:
        return self.verifiable and not self.identity

    def describe(self) -> str:
        if not self.verifiable:
            lines = ["the table predates device identities (no cpu_isa): its device cannot be verified"]
            lines += self.identity
            return "\n  ".join(lines)
        if self.identity:
            return "another device:\n  " + "\n  ".join(self.identity)
        if self.info:
            return "same device (informational differences: " + "; ".join(self.info) + ")"
        return "same device"


def _differ(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) != sorted(map(str, b))
    return a != b


def compare(table_fp: Mapping[str, Any], here: Mapping[str, Any]) -> DeviceMatch:
    """Compare a table's fingerprint with this machine's; fields absent on either side are skipped."""
    verifiable = "cpu_isa" in table_fp or "gpu_compute_capability" in table_fp
    ident, info = [], []
    for names, out in ((IDENTITY_FIELDS, ident), (INFO_FIELDS, info)):
        for name in names:
            if name not in table_fp or name not in here:
                continue
            if _differ(table_fp[name], here[name]):
                out.append(f"{name}: table {table_fp[name]!r}, here {here[name]!r}")
    if not verifiable and table_fp.get("cpu_model") != here.get("cpu_model") and "cpu_model" in table_fp:
        ident.append(f"cpu_model: table {table_fp['cpu_model']!r}, here {here.get('cpu_model')!r}")
    return DeviceMatch(ident, info, verifiable)


def describe_device(fp: Mapping[str, Any]) -> str:
    """One line naming the device and runtime a fingerprint describes (what a budget refers to)."""
    if fp.get("gpu_name"):
        dev = f"{fp['gpu_name']} (sm {fp.get('gpu_compute_capability', '?')})"
    else:
        isa = isa_class(fp) if "cpu_isa" in fp else "ISA not recorded"
        fam = f" family {fp['cpu_family']} model {fp['cpu_model_id']}" if fp.get("cpu_family") else ""
        dev = f"{fp.get('cpu_model', '?')} [{isa}{fam}]"
    rt = f"{fp.get('runtime', '?')} {fp.get('runtime_version', '')}".strip()
    return (
        f"{dev}, {rt} {fp.get('provider', '')}, {fp.get('threads', '?')} thread(s), batch {fp.get('batch', '?')},"
        f" {fp.get('resolution', '?')}x{fp.get('resolution', '?')} {fp.get('precision', '')}"
    ).replace("  ", " ")
