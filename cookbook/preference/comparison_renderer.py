"""A comparison as one chat conversation that ends where the judge writes its label.

The layout (Tinker's): the prompt messages, a system marker "==== Completion A ====", A's
messages, "==== Completion B ====", B's messages, "==== Preference ====", then the assistant
turn holding the label. The same chat renderer the policy uses renders it, so a preference
model initialised from the policy reads a familiar format. Training trains exactly ONE token,
the label's first (with role_colon " A" or " B"): the example is cut right after it, so the
model learns a two-way choice at one position and nothing about what follows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from cookbook.client.types import Datum, ModelInput
from cookbook.preference.types import Comparison, Label, LabeledComparison
from cookbook.renderers import Message, Renderer, TrainOnWhat
from cookbook.supervised.common import datum_from_model_input_weights

if TYPE_CHECKING:
    from cookbook.tokenizer_utils import Tokenizer

COMPLETION_A_MARKER = "==== Completion A ===="
COMPLETION_B_MARKER = "==== Completion B ===="
PREFERENCE_MARKER = "==== Preference ===="


class ComparisonRenderer(ABC):
    """Comparisons to model inputs: the judge's prompt and its one-token training example."""

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """The tokenizer of the judge's model."""

    @abstractmethod
    def build_generation_prompt(self, comparison: Comparison) -> ModelInput:
        """The tokens after which the judge writes its label."""

    @abstractmethod
    def to_model_input_weights(self, labeled: LabeledComparison) -> tuple[ModelInput, np.ndarray]:
        """The training example: the prompt, then the label token, which alone has weight 1."""

    @abstractmethod
    def label_token(self, label: Label) -> int:
        """The (first) token the judge writes for `label`."""

    def to_datum(self, labeled: LabeledComparison, max_length: int | None = None) -> Datum:
        """The training Datum (weights unnormalised: one label token of weight 1).

        Raises `NoTrainedTokensError` when `max_length` cuts the label off.
        """
        model_input, weights = self.to_model_input_weights(labeled)
        return datum_from_model_input_weights(model_input, weights, max_length=max_length, reduction="none")


class ComparisonRendererFromChatRenderer(ComparisonRenderer):
    """The comparison layout above, rendered by a chat `Renderer`."""

    def __init__(self, convo_renderer: Renderer):
        self.convo_renderer = convo_renderer
        self._label_tokens: dict[str, int] = {}

    @property
    def tokenizer(self) -> Tokenizer:
        return self.convo_renderer.tokenizer

    def conversation(self, comparison: Comparison) -> list[Message]:
        """The comparison as the messages the judge reads (without its answer)."""
        return [
            *comparison.prompt_conversation,
            {"role": "system", "content": COMPLETION_A_MARKER},
            *comparison.completion_A,
            {"role": "system", "content": COMPLETION_B_MARKER},
            *comparison.completion_B,
            {"role": "system", "content": PREFERENCE_MARKER},
        ]

    def build_generation_prompt(self, comparison: Comparison) -> ModelInput:
        return self.convo_renderer.build_generation_prompt(self.conversation(comparison))

    def to_model_input_weights(self, labeled: LabeledComparison) -> tuple[ModelInput, np.ndarray]:
        messages = [*self.conversation(labeled.comparison), {"role": "assistant", "content": labeled.label}]
        tokens, weights = self._rendered(messages)
        first = _first_trained(weights, f"the label {labeled.label!r}")
        if tokens[first] != self.label_token(labeled.label):
            raise ValueError(
                f"the label {labeled.label!r} renders as token {tokens[first]} in this comparison "
                f"but as {self.label_token(labeled.label)} on its own: the renderer "
                f"{self.convo_renderer!r} tokenizes the label depending on its context"
            )
        one_hot = np.zeros(first + 1, dtype=np.float32)
        one_hot[first] = 1.0
        return ModelInput.from_ints(tokens[: first + 1]), one_hot

    def label_token(self, label: Label) -> int:
        if label not in self._label_tokens:
            tokens, weights = self._rendered([{"role": "assistant", "content": label}])
            self._label_tokens[label] = tokens[_first_trained(weights, f"the label {label!r}")]
        return self._label_tokens[label]

    def _rendered(self, messages: list[Message]) -> tuple[list[int], np.ndarray]:
        model_input, weights = self.convo_renderer.build_supervised_example(
            messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE
        )
        return model_input.to_ints(), weights


def _first_trained(weights: np.ndarray, what: str) -> int:
    trained = np.flatnonzero(weights > 0)
    if trained.size == 0:
        raise ValueError(f"{what} renders to no trained token")
    return int(trained[0])
