"""The local training server: FastAPI routes over a PyTorch engine (training, LoRA, sampling)."""
