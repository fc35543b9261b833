"""Workflows that run the science end to end, kept apart from it: the demo, the benchmark of
every method, and the timed passes of the data pipeline."""
