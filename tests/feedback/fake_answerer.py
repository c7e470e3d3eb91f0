"""A stand-in for the training server's answers, for app tests that need no model."""

from __future__ import annotations

from cookbook.feedback.store import Message, NewAnswer


class EchoAnswerer:
    """Answer i to a question is "answer i to: <question>"."""

    model = "echo-model"

    async def answer_async(self, messages: list[Message], n: int, seed: int | None = None) -> list[NewAnswer]:
        question = messages[-1]["content"]
        return [
            NewAnswer(
                f"answer {i} to: {question}", self.model, {"temperature": 1.0, "seed": seed}, "role_colon"
            )
            for i in range(n)
        ]
