"""The store: its schema, Parquet segments, the DuckDB views, the batch writer, export and compaction.

Imports only ``parity.wire``; the recorder, replayer, fake provider and evals sit above it.
"""
