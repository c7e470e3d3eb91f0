"""Client SDK and recipe library for post-training (SFT, preference models, RL, DPO)."""
