"""Benchmarks that need more than the engine: python -m bench.load_test."""
