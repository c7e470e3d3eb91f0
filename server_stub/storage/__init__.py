"""On-disk state under the storage dir: checkpoints, run metadata, spilled sampler snapshots."""
