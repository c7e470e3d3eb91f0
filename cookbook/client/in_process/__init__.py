"""The client SDK over the server's engine and scheduler in this very process (`connect("inprocess://")`).

No HTTP, no JSON, no polling: the baseline that measures what the service itself costs. Importing this
package imports `server_stub` (and building a server imports torch), so `cookbook.client.connect`
imports it only for an `inprocess://` URL.
"""

from cookbook.client.connection import IN_PROCESS_PREFIX
from cookbook.client.in_process.sampling import InProcessSamplingClient
from cookbook.client.in_process.server import SCHEME, InProcessServer, shared_in_process_server
from cookbook.client.in_process.service import InProcessServiceClient
from cookbook.client.in_process.training import InProcessTrainingClient


def connect_in_process(url: str = IN_PROCESS_PREFIX) -> InProcessServiceClient:
    """A service client over this process's server for the flags `url` names (see `server`)."""
    return InProcessServiceClient(shared_in_process_server(url))


__all__ = [
    "SCHEME",
    "InProcessSamplingClient",
    "InProcessServer",
    "InProcessServiceClient",
    "InProcessTrainingClient",
    "connect_in_process",
    "shared_in_process_server",
]
