"""Benchmarks for the speaker-embedding engines; run with `python -m bench`."""
