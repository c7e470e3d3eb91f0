"""The HTTP implementation of the client SDK (httpx; the Tinker JSON wire and its protobuf form)."""

from cookbook.client.http.sampling import HttpSamplingClient
from cookbook.client.http.service import HttpServiceClient
from cookbook.client.http.settings import RetryPolicy
from cookbook.client.http.training import HttpTrainingClient

__all__ = ["HttpSamplingClient", "HttpServiceClient", "HttpTrainingClient", "RetryPolicy"]
