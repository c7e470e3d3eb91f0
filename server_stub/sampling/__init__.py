"""Sampling: batched KV-cache generation, per-row sampling parameters, stops, weight snapshots.

What sampling guarantees (tests/server/engine/test_engine_sampling.py checks each):
- Tokens depend only on the request: the same request with the same `seed` (or greedy, temperature
  0) gives the same tokens alone or in any batch, whatever its neighbours' prompts, lengths and
  settings, and whichever rows have been dropped from the batch as finished.
- Logprobs depend on the batch only through floating-point rounding: the CPU and GPU matrix kernels
  add in an order that depends on the batch's shape and a row's place in it, so the same row's
  logprobs may differ between batches by rounding, and we do not pay for batch-invariant kernels.
  They agree to within `FP32_LOGPROB_ATOL` (fp32 weights), as do the sampler's logprobs and the
  prompt logprobs (`compute_logprobs`) or a training forward pass of the same tokens.
- The one exception to the first point follows from the second: where two candidate tokens' logprobs
  lie within that tolerance of each other, greedy decoding (or a draw that lands on the boundary
  between them) may pick either, depending on the batch.
"""

# Rounding between batches stays near 1e-6 on the built-in model; deeper models round more, hence the margin.
FP32_LOGPROB_ATOL = 1e-4
