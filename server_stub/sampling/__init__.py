"""Sampling: batched KV-cache generation, per-row sampling parameters, stops, weight snapshots."""
