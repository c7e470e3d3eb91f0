"""Base-model tokenizers fetched from the server (our `get_tokenizer` route), cached.

Clients never need transformers or the Hugging Face Hub: the server sends tokenizer.json text
and the special-token names, and `tokenizers` builds the tokenizer locally.
"""

from __future__ import annotations

from cookbook.client import types
from cookbook.client.http.transport import Transport
from cookbook.tokenizer_utils import Tokenizer


async def fetch_tokenizer(transport: Transport, base_model: str) -> Tokenizer:
    """The tokenizer of `base_model`, fetched once per server connection."""
    cached = transport.tokenizers.get(base_model)
    if cached is not None:
        return cached
    data = await transport.post("/get_tokenizer", types.TokenizerRequest(model_name=base_model))
    tokenizer = tokenizer_from_response(types.TokenizerResponse.model_validate(data))
    transport.tokenizers[base_model] = tokenizer
    return tokenizer


def tokenizer_from_response(answer: types.TokenizerResponse) -> Tokenizer:
    """Build the tokenizer a `get_tokenizer` answer describes (from the wire or an in-process engine)."""
    return Tokenizer.from_json_str(
        answer.tokenizer_json,
        name_or_path=answer.model_name,
        bos_token=answer.bos_token,
        eos_token=answer.eos_token,
        pad_token=answer.pad_token,
        chat_template=answer.chat_template,
    )
