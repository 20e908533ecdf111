"""Benchmarks: `sdfarm bench` prints figures and writes them as JSON (see bench/README.md)."""
