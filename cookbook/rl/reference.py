"""The reference policy of the KL penalty, as a sampling client (only its `compute_logprobs` is used)."""

from __future__ import annotations

from cookbook.client.abstract import SamplingClient, ServiceClient
from cookbook.client.types import ParsedCheckpointTinkerPath


async def create_reference_sampling_client(
    service_client: ServiceClient, model_name: str, path: str | None
) -> SamplingClient:
    """A frozen snapshot of the reference policy.

    `path` may be a sampler checkpoint (`tinker://run/sampler_weights/name`, used directly) or a
    training state (`tinker://run/weights/name`, e.g. the SFT stage's `state_path`: its weights
    are loaded into a model of their own and snapshotted). None means the base model itself,
    i.e. the policy's initial weights when training starts from the base.
    """
    if path is None:
        return await service_client.create_sampling_client_async(base_model=model_name)
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    if parsed.checkpoint_type == "sampler":
        return await service_client.create_sampling_client_async(model_path=path)
    holder = await service_client.create_training_client_from_state_async(path)
    return await holder.save_weights_and_get_sampling_client_async()
