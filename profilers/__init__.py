"""Device-side latency profilers for tfnas (numpy + onnxruntime only; never torch or tfnas).

The host writes a bundle (ONNX graphs + manifest); ``profile_bundle`` times each graph
with a ``TimingProtocol`` on a ``Backend`` and writes a ``LatencyTable`` (LUT JSON).
"""

from __future__ import annotations

from profilers.backends import BACKENDS, Backend, get_backend
from profilers.bundle import Manifest, ManifestEntry, load_manifest
from profilers.errors import ProfilerError
from profilers.fingerprint import DEFAULT_MATCH_FIELDS, REQUIRED_FINGERPRINT_KEYS, current_fingerprint
from profilers.lut import LUT_FORMAT, SCHEMA_VERSION, LatencyTable
from profilers.run import profile_bundle
from profilers.timing import Measurement, TimingProtocol, measure

__all__ = [
    "BACKENDS",
    "DEFAULT_MATCH_FIELDS",
    "LUT_FORMAT",
    "REQUIRED_FINGERPRINT_KEYS",
    "SCHEMA_VERSION",
    "Backend",
    "LatencyTable",
    "Manifest",
    "ManifestEntry",
    "Measurement",
    "ProfilerError",
    "TimingProtocol",
    "current_fingerprint",
    "get_backend",
    "load_manifest",
    "measure",
    "profile_bundle",
]
