"""Benchmarks for llmroute_magic: router overhead, import time, ledger scale, routing quality.

Run ``python -m benchmarks`` (about two minutes) or ``python -m benchmarks --quick`` (CI smoke).
Every figure is measured beside a baseline taken in the same run and reported as a ratio, so the
verdicts hold on a slow or busy machine too. Targets are DESIGN.md section 6; a missed target is
printed as MISS and does not fail the run (only a crash does).
"""
