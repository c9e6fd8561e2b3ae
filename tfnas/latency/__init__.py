"""Latency model: op signatures, profiling bundles, LUT prediction and calibration."""
