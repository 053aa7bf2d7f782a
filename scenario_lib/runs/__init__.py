"""Runs: a generation run's context and driver, batches of runs, and promotion into benchmarks."""
