"""The exact bytes each token id contributes to decoded text.

Stop strings are matched on decoded text across token boundaries. Decoding a whole sequence
after every step would cost O(n^2); instead the sampler looks up each new token's bytes here and
matches stop strings as UTF-8 bytes, which is equivalent for valid text.
"""

from __future__ import annotations

import json
import re

import numpy as np

_BYTE_FALLBACK_RE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _byte_level_alphabet() -> dict[str, int]:
    """The GPT-2 byte-level alphabet, inverted: visible character -> the byte it stands for.

    Printable bytes stand for themselves; the remaining bytes are shifted to code points from 256
    upwards so every byte has a visible, non-whitespace character.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {chr(b): b for b in printable}
    shift = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + shift)] = b
            shift += 1
    return mapping


def _uses_byte_level(decoder: object) -> bool:
    if not isinstance(decoder, dict):
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    return any(_uses_byte_level(d) for d in decoder.get("decoders", []) or [])


def token_bytes_table(tokenizer_json: str) -> list[bytes]:
    """bytes for every id in [0, max id]; ids the tokenizer does not define map to b""."""
    spec = json.loads(tokenizer_json)
    vocab: dict[str, int] = dict(spec.get("model", {}).get("vocab", {}) or {})
    for added in spec.get("added_tokens", []) or []:
        vocab[added["content"]] = added["id"]
    specials = {added["content"] for added in spec.get("added_tokens", []) or []}
    size = max(vocab.values(), default=-1) + 1
    table = [b""] * size
    if _uses_byte_level(spec.get("decoder")):
        alphabet = _byte_level_alphabet()
        for text, idx in vocab.items():
            if text in specials or any(ch not in alphabet for ch in text):
                table[idx] = text.encode("utf-8")
            else:
                table[idx] = bytes(alphabet[ch] for ch in text)
        return table
    for text, idx in vocab.items():  # SentencePiece style: "▁" is a space, <0xNN> a raw byte
        match = _BYTE_FALLBACK_RE.match(text)
        if match and text not in specials:
            table[idx] = bytes([int(match.group(1), 16)])
        else:
            table[idx] = text.replace("▁", " ").encode("utf-8")
    return table


class TokenBytes:
    """The table plus a cached index "which tokens contain byte b", used to pre-filter stop checks."""

    def __init__(self, tokenizer_json: str):
        self.table = token_bytes_table(tokenizer_json)
        self._containing: dict[int, np.ndarray] = {}

    def containing(self, byte: int) -> np.ndarray:
        """Boolean mask over ids: does the token's text contain `byte`?"""
        mask = self._containing.get(byte)
        if mask is None:
            needle = bytes([byte])
            mask = self._containing[byte] = np.fromiter(
                (needle in b for b in self.table), bool, len(self.table)
            )
        return mask
