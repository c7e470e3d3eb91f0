"""Suite-wide settings that must be in place before torch or the hub libraries are imported."""

from __future__ import annotations

import os

# Idle OpenMP threads otherwise spin on the CPU; on a 2-core machine shared with a server
# process that made small training steps 5-10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test may reach the Hugging Face Hub (there is no network); fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TINKER_TELEMETRY", "0")
