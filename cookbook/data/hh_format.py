"""The Anthropic/hh-rlhf transcript format: "\\n\\nHuman: ...\\n\\nAssistant: ..." turns.

Bundled comparisons are written in this format so that they load through the same code path
as the real hh-rlhf files; `parse_transcript` is the inverse used by the tests.
"""

from __future__ import annotations

import re

_SPEAKER = {"user": "Human", "assistant": "Assistant"}
_ROLE = {"Human": "user", "Assistant": "assistant"}
_TURN_RE = re.compile(r"\n\n(Human|Assistant): ")


def render_transcript(messages: list[dict[str, str]]) -> str:
    """A user/assistant conversation as one hh-rlhf transcript string (system turns not allowed)."""
    parts = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in _SPEAKER:
            raise ValueError(
                f"messages[{i}]: hh-rlhf transcripts only hold user/assistant turns, got {role!r}"
            )
        parts.append(f"\n\n{_SPEAKER[role]}: {message['content']}")
    return "".join(parts)


def parse_transcript(text: str) -> list[dict[str, str]]:
    """The turns of a transcript as role/content messages."""
    pieces = _TURN_RE.split(text)
    if pieces[0] != "":
        raise ValueError(f"transcript must start with '\\n\\nHuman: ', got {text[:30]!r}")
    return [
        {"role": _ROLE[speaker], "content": content}
        for speaker, content in zip(pieces[1::2], pieces[2::2], strict=True)
    ]
