"""The local training server: FastAPI routes over a PyTorch engine (training, LoRA, sampling)."""

from server_stub.device import prefer_short_openmp_spin

prefer_short_openmp_spin()  # here, before any module of the server can import torch (see device.py)
