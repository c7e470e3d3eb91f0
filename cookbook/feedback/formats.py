"""Feedback rows in the public schemas the rest of the cookbook reads: no_robots (chat) and hh-rlhf (pairs)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from cookbook.data.hh_format import render_transcript

if TYPE_CHECKING:
    from cookbook.feedback.store import ChatExample, RankedPair

FEEDBACK_CATEGORY = "feedback"


def no_robots_row(example: ChatExample) -> dict[str, Any]:
    """A HuggingFaceH4/no_robots row: prompt, prompt_id, messages, category."""
    prompt = next(m["content"] for m in reversed(example.messages) if m["role"] == "user")
    return {
        "prompt": prompt,
        "prompt_id": hashlib.sha256(f"feedback/{example.question_id}/{prompt}".encode()).hexdigest(),
        "messages": example.messages,
        "category": FEEDBACK_CATEGORY,
    }


def hh_rlhf_row(pair: RankedPair) -> dict[str, str] | None:
    """An Anthropic/hh-rlhf row (chosen, rejected transcripts); None for a prompt with a system turn,
    which the hh-rlhf transcript format cannot hold."""
    if any(m["role"] == "system" for m in pair.prompt):
        return None
    return {
        "chosen": render_transcript([*pair.prompt, {"role": "assistant", "content": pair.chosen}]),
        "rejected": render_transcript([*pair.prompt, {"role": "assistant", "content": pair.rejected}]),
    }
