"""The reference policy of the KL penalty: the frozen weights it is scored with.

From a checkpoint (the SFT stage's state or sampler weights) it is a training client holding those
weights, never trained: a step's reference logprobs are then one `forward` call over the batch.
The base model itself (no checkpoint) is its sampling client, scored with `compute_logprobs`.
"""

from __future__ import annotations

from cookbook.client.abstract import ServiceClient
from cookbook.rl.kl_penalty import ReferencePolicy


async def create_reference_policy(
    service_client: ServiceClient, model_name: str, path: str | None
) -> ReferencePolicy:
    """A frozen copy of the reference policy.

    `path` may be a training state (`tinker://run/weights/name`, e.g. the SFT stage's `state_path`)
    or a sampler checkpoint (`tinker://run/sampler_weights/name`); its weights are loaded into a model
    of their own. None means the base model, i.e. the policy's initial weights when training starts
    from the base.
    """
    if path is None:
        return await service_client.create_sampling_client_async(base_model=model_name)
    return await service_client.create_training_client_from_state_async(path)
