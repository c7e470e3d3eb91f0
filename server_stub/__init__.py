"""The local training server: FastAPI routes over a PyTorch engine (training, LoRA, sampling)."""

from server_stub.device import prefer_short_openmp_spin, prefer_thread_independent_matmuls

# Here, before any module of the server can import torch or multiply a matrix (see device.py).
prefer_short_openmp_spin()
prefer_thread_independent_matmuls()
