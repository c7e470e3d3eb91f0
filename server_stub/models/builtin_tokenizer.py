"""The built-in byte-level BPE tokenizer (vocab 512), trained locally and deterministically.

No download is possible on the project's machines, so the tiny model's tokenizer is trained from
`tokenizer_corpus` the first time it is needed and cached for the life of the process. The result
is the same bytes on every build, which the tests check.
"""

from __future__ import annotations

import threading

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BUILTIN_VOCAB_SIZE = 512
EOS_TOKEN = "<|endoftext|>"  # also the pad token; the tiny model has no BOS

_lock = threading.Lock()
_cached_json: str | None = None


def _train() -> Tokenizer:
    from server_stub.models.tokenizer_corpus import corpus_lines

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BUILTIN_VOCAB_SIZE,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_lines(), trainer=trainer)
    return tokenizer


def builtin_tokenizer_json() -> str:
    """tokenizer.json text of the built-in tokenizer (trained once per process, thread-safe)."""
    global _cached_json
    with _lock:
        if _cached_json is None:
            _cached_json = _train().to_str()
        return _cached_json


def builtin_tokenizer() -> Tokenizer:
    """A fresh `tokenizers.Tokenizer` for the built-in vocabulary."""
    return Tokenizer.from_str(builtin_tokenizer_json())
