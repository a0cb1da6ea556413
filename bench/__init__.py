"""Benchmarks for SparkTrainer: ``python -m bench.run [NAME ...]`` (see bench/README.md)."""
