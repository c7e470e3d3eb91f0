"""What the official tinker-cookbook reads from disk when it runs offline, made from this project's own parts.

The cookbook names its models and data sets by their Hub ids and looks for a local directory of
that name first: `get_tokenizer("meta-llama/Llama-3.2-1B")` reads ./meta-llama/Llama-3.2-1B and
`datasets.load_dataset("HuggingFaceH4/no_robots")` reads ./HuggingFaceH4/no_robots. A workspace
holds the built-in tiny model saved as a Hugging Face directory under the cookbook's model name
(the server serves the same directory under that name) and the bundled data, whose rows already
have the schemas of no_robots and hh-rlhf, under those data sets' names.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A name in the cookbook's model table whose renderer (role_colon) needs no special tokens.
COOKBOOK_MODEL = "meta-llama/Llama-3.2-1B"


@dataclass(frozen=True)
class LocalDataset:
    rows: Callable[[str], list[dict[str, Any]]]  # split -> the bundled rows of that split
    sizes: dict[str, int]  # rows written per split


def _bundled(kind: str) -> Callable[[str], list[dict[str, Any]]]:
    def rows(split: str) -> list[dict[str, Any]]:
        from cookbook.data import bundled

        return bundled.chat_split(split) if kind == "chat" else bundled.comparison_split(split)

    return rows


COOKBOOK_DATASETS: dict[str, LocalDataset] = {
    # sl_basic's batch is 128 rows: two training steps and one evaluation batch.
    "HuggingFaceH4/no_robots": LocalDataset(_bundled("chat"), {"train": 256, "test": 128}),
    # The RLHF pipeline's preference and RL stages, at a batch of 16.
    "Anthropic/hh-rlhf": LocalDataset(_bundled("comparisons"), {"train": 64, "test": 16}),
}


@dataclass(frozen=True)
class CookbookWorkspace:
    root: Path  # the recipe's working directory

    @property
    def model_dir(self) -> Path:
        return self.root / COOKBOOK_MODEL


def save_tiny_model(directory: Path) -> None:
    """The built-in tiny model as a Hugging Face directory: config, weights and tokenizer."""
    import torch

    from server_stub.models.builtin_tokenizer import EOS_TOKEN, builtin_tokenizer_json
    from server_stub.models.tiny_llama import build_tiny_llama

    build_tiny_llama(torch.device("cpu"), torch.float32).save_pretrained(directory)
    (directory / "tokenizer.json").write_text(builtin_tokenizer_json())
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))


def save_dataset(directory: Path, dataset: LocalDataset) -> None:
    """One JSONL file per split, named after it (train.jsonl, test.jsonl)."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, size in dataset.sizes.items():
        lines = (json.dumps(row) for row in dataset.rows(split)[:size])
        (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def make_workspace(root: Path) -> CookbookWorkspace:
    workspace = CookbookWorkspace(root)
    save_tiny_model(workspace.model_dir)
    for name, dataset in COOKBOOK_DATASETS.items():
        save_dataset(root / name, dataset)
    return workspace


if __name__ == "__main__":
    # python -m tests.official_sdk.cookbook_workspace DIR: a workspace to try the cookbook by hand
    made = make_workspace(Path(sys.argv[1]).resolve())
    print(f"serve:  python -m server_stub --api-key tml-local --model {COOKBOOK_MODEL}={made.model_dir}")
    print(f"then, from {made.root}, run a cookbook recipe with model_name={COOKBOOK_MODEL}")
