"""Benchmarks behind the ``drope-bench`` command."""
