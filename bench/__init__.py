"""Benchmarks: scripts that print figures (see RESULTS.md)."""
