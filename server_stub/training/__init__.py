"""Training: trainable models (full or LoRA), batched forward/backward, losses, AdamW."""
