"""Benchmark scripts: each prints a table (run as `.venv/bin/python bench/NAME.py --help`)."""
