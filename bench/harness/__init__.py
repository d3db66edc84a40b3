"""The benchmark harness: workloads, a private Redis, the report. Entry point: ``bench/run.py``."""
