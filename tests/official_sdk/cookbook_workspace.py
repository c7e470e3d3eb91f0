"""What the official tinker-cookbook reads from disk when it runs offline, made from this project's own parts.

The cookbook names its models and data sets by their Hub ids and looks for a local directory of
that name first: `get_tokenizer("meta-llama/Llama-3.2-1B")` reads ./meta-llama/Llama-3.2-1B and
`datasets.load_dataset("HuggingFaceH4/no_robots")` reads ./HuggingFaceH4/no_robots. A workspace
holds the built-in tiny model saved as a Hugging Face directory under the cookbook's model name
(the server serves the same directory under that name) and the bundled chat data in no_robots'
schema under no_robots' name.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

# A name in the cookbook's model table whose renderer (role_colon) needs no special tokens.
COOKBOOK_MODEL = "meta-llama/Llama-3.2-1B"
COOKBOOK_DATASET = "HuggingFaceH4/no_robots"
# sl_basic's batch is 128 rows: two training steps, one evaluation batch.
DATASET_ROWS = {"train": 256, "test": 128}


@dataclass(frozen=True)
class CookbookWorkspace:
    root: Path  # the recipe's working directory

    @property
    def model_dir(self) -> Path:
        return self.root / COOKBOOK_MODEL

    @property
    def dataset_dir(self) -> Path:
        return self.root / COOKBOOK_DATASET


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


def save_chat_dataset(directory: Path) -> None:
    """The bundled chat rows (already in no_robots' schema) as train.jsonl and test.jsonl."""
    from cookbook.data.bundled import chat_split

    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in DATASET_ROWS.items():
        lines = (json.dumps(row) for row in chat_split(split)[:rows])
        (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def make_workspace(root: Path) -> CookbookWorkspace:
    workspace = CookbookWorkspace(root)
    save_tiny_model(workspace.model_dir)
    save_chat_dataset(workspace.dataset_dir)
    return workspace


if __name__ == "__main__":
    # python -m tests.official_sdk.cookbook_workspace DIR: a workspace to try the cookbook by hand
    made = make_workspace(Path(sys.argv[1]).resolve())
    print(f"serve:  python -m server_stub --api-key tml-local --model {COOKBOOK_MODEL}={made.model_dir}")
    print(f"then, from {made.root}, run a cookbook recipe with model_name={COOKBOOK_MODEL}")
