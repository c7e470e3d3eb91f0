"""Real tokenizers for tests: byte-level BPEs trained here with `tokenizers`, written as Hugging
Face directories (tokenizer.json + tokenizer_config.json) with each chat format's special tokens.

Training on a fixed corpus is deterministic and takes a few milliseconds, so every test session
builds its own instead of relying on downloaded model files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from cookbook.client.types import ModelInput
from cookbook.tokenizer_utils import Tokenizer as CookbookTokenizer

_SENTENCES = [
    "What is 3 plus 4?",
    "3 plus 4 is 7.",
    "What is the capital of France?",
    "The capital of France is Paris.",
    "Sure! Happy to help.",
    "Of course! Here you go.",
    "Ugh, fine. Whatever.",
    "Thank you, please continue.",
    "List three colors: red, green, blue.",
    "1. apple 2. banana 3. cherry",
    "Repeat the word cat twice.",
    "cat cat",
    "The opposite of hot is cold.",
    "HELLO WORLD",
    "You are a helpful assistant.",
    "Hello! How are you today?",
    "I am fine, thanks for asking.",
]
# Role markers in the formats' own spelling, so that the learned merges resemble real tokenizers.
_CHAT_LINES = [
    f"User: {q}\n\nAssistant: {a}\n\n" for q, a in zip(_SENTENCES[::2], _SENTENCES[1::2], strict=False)
]
_CHAT_LINES += ["System: Be brief.\n\nUser: hi\n\nAssistant: hello\n\nUser:", "user\nassistant\nsystem\n"]
CORPUS = (_SENTENCES + _CHAT_LINES) * 3

# kind -> (special tokens, extra non-special added tokens, tokenizer_config.json special-token entries)
FORMATS: dict[str, tuple[list[str], list[str], dict[str, str]]] = {
    "plain": (["<|endoftext|>"], [], {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
    "plain_bos": (["<s>", "</s>"], [], {"bos_token": "<s>", "eos_token": "</s>"}),
    "chatml": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        [],
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    ),
    "llama3": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        [],
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
    ),
    "qwen3": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        ["<think>", "</think>"],
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    ),
}


def train_byte_level_bpe(
    special_tokens: list[str], added_tokens: list[str], vocab_size: int = 400
) -> Tokenizer:
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS, trainer=trainer)
    if added_tokens:
        raw.add_tokens([AddedToken(t, special=False, normalized=False) for t in added_tokens])
    return raw


def write_tokenizer_dir(kind: str, root: Path) -> Path:
    """A Hugging Face style tokenizer directory for one chat format under `root`."""
    special, added, config = FORMATS[kind]
    out = root / f"tok-{kind}"
    out.mkdir(parents=True, exist_ok=True)
    train_byte_level_bpe(special, added).save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 512}))
    return out


def layout(
    tokenizer: CookbookTokenizer, model_input: ModelInput, weights: np.ndarray | None = None
) -> list[tuple[str, float]]:
    """Each chunk of a model input as (decoded text, its weight); a chunk must have one weight."""
    out: list[tuple[str, float]] = []
    start = 0
    for chunk in model_input.chunks:
        n = len(chunk.tokens)
        assert n > 0, "renderers must never emit empty chunks"
        weight = 0.0
        if weights is not None:
            chunk_weights = set(weights[start : start + n].tolist())
            assert len(chunk_weights) == 1, f"chunk {chunk.tokens} has mixed weights {chunk_weights}"
            weight = chunk_weights.pop()
        out.append((tokenizer.decode(chunk.tokens), weight))
        start += n
    assert weights is None or start == len(weights)
    return out


SPECIAL_NAMES = {name for special, _, _ in FORMATS.values() for name in special}


def encode_parts(tokenizer: CookbookTokenizer, parts: list[str]) -> list[int]:
    """Expected token ids: special-token names by id, other text encoded on its own."""
    ids: list[int] = []
    for part in parts:
        special_id = tokenizer.convert_tokens_to_ids(part) if part in SPECIAL_NAMES else None
        ids += [special_id] if special_id is not None else tokenizer.encode(part)
    return ids
