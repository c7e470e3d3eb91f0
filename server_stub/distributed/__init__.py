"""The server on several processes (torch.distributed): rank 0 serves, every rank computes.

`python -m server_stub --ranks N` starts N-1 worker processes on this host (`launch.py`);
`torchrun ... -m server_stub.worker ...` does the same across hosts (`server_stub/worker.py`).
Rank 0 runs the web layer and a `LeaderEngine` (`leader.py`), the web layer's `Engine`: it sends
each training and sampling call to every rank (`protocol.py`), runs it on its own `RankEngine`
(`rank_engine.py`) and answers with rank 0's result. Full-weight models are FSDP2-sharded (`fully_shard`: each rank
holds 1/N of the weights, gradients and AdamW state); LoRA adapters are replicated (a few MB; their
frozen base is shared with samplers and other adapters) with gradients all-reduced at `optim_step`.
`forward_backward` splits a request's datums across ranks by tokens (`data_parallel.py`);
checkpoints are gathered whole and written by rank 0 as one folder, and loads are read on rank 0
and broadcast, so a checkpoint does not know how many ranks wrote it. Samplers are replicas: every
rank holds each sampler's whole snapshot, and a batch of sample requests is split across ranks by
tokens (seeded draws depend on the request alone, so the split changes no token). Export and
checkpoint deletion run on rank 0 alone. Backend: gloo on CPU, NCCL on CUDA, through the same code.

Teardown order matters: a process that exits while a gloo collective is in flight on another
thread aborts (SIGABRT, "terminate called without an active exception": gloo's transport thread is
destroyed still running; bench/README.md, Several ranks), so the compute thread is stopped first,
the workers are told to stop, and `destroy_process_group` runs last, on every rank. Workers ignore
SIGINT/SIGTERM and leave when rank 0 says so (or is gone), so a Ctrl-C never kills a rank mid-collective.
"""
