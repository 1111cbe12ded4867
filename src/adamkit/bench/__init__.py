"""Benchmarks: ``adamkit bench`` (tasks and report), ``adamkit speed`` and ``adamkit memory``."""
