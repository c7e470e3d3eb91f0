"""Supervised fine-tuning of the built-in tiny model on the bundled chat data: the smallest real run.

    python -m cookbook.recipes.sl_basic                      # bundled local server, ~300 steps
    python -m cookbook.recipes.sl_basic max_steps=20 log_path=/tmp/sl-try
    python -m cookbook.recipes.sl_basic base_url=http://gpu-box:8000 model_name=... dataset=HuggingFaceH4/no_robots
    python -m cookbook.recipes.sl_basic optimizer.learning_rate=1e-3 optimizer.lr_warmup_steps=5

It trains "tiny-llama" with full weights (a random-init model has nothing for LoRA to adapt)
through the auto-started local server, evaluates `test/nll` on the bundled test split, and
writes metrics.jsonl, checkpoints.jsonl and metrics.png to `log_path`. Re-running the same
command resumes from the last checkpoint, or does nothing if the run finished.
Defaults follow the feasibility measurements of this pipeline (batch 32, lr 3e-3 with warmup then
cosine decay, 3 epochs); what they reach is in the README.
"""

from __future__ import annotations

import chz

from cookbook.feedback.builders import FeedbackSFTBuilder
from cookbook.feedback.store import is_feedback_path
from cookbook.model_config import BUILTIN_MODEL_NAME, get_recommended_lora_rank, renderer_name_for
from cookbook.recipes.chat_sl.chat_datasets import BUNDLED, NoRobotsBuilder
from cookbook.recipes.renamed_keys import OPTIMIZER_KEYS, recipe_entrypoint
from cookbook.supervised import train
from cookbook.supervised.types import ChatDatasetBuilder, ChatDatasetBuilderCommonConfig
from cookbook.utils.checkpoints import CheckpointRecord
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from cookbook.utils.run_dir import BehaviorIfExists

DEFAULT_LOG_PATH = "/tmp/cookbook-runs/sl_basic"
RENAMED_KEYS: dict[str, str] = OPTIMIZER_KEYS


@chz.chz
class ChatSFT:
    """What to train on and how: this recipe's settings, and those of the RLHF pipeline's SFT stage."""

    dataset: str = (
        BUNDLED  # or a hub id / local file or directory in the no_robots schema, or a feedback *.sqlite
    )
    batch_size: int = 32
    max_length: int | None = 128
    num_epochs: int = 3
    eval_every: int = 40
    optimizer: OptimizerConfig = optimizer_defaults(
        learning_rate=3e-3,
        lr_schedule="cosine",
        lr_warmup_steps=20,
        grad_clip_norm=1.0,
    )

    def dataset_builder(
        self, model_name: str, renderer_name: str, base_url: str | None
    ) -> ChatDatasetBuilder:
        common = ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer=model_name,
            renderer_name=renderer_name,
            max_length=self.max_length,
            batch_size=self.batch_size,
            base_url=base_url,
        )
        if is_feedback_path(self.dataset):
            return FeedbackSFTBuilder(common_config=common, db=self.dataset)
        return NoRobotsBuilder(common_config=common, dataset=self.dataset)


@chz.chz
class CLIConfig(ChatSFT):
    """The knobs worth turning from the command line; everything else keeps train.Config's defaults."""

    log_path: str = DEFAULT_LOG_PATH
    base_url: str | None = None  # None: start the bundled local server
    model_name: str = BUILTIN_MODEL_NAME
    renderer_name: str | None = None  # None: the model's recommended chat format
    lora_rank: int | None = None  # None: full weights for tiny-llama, LoRA rank 32 otherwise
    max_steps: int | None = None
    save_every: int = 50
    submit_ahead: int = 1
    wandb_project: str | None = None
    wandb_name: str | None = None
    behavior_if_log_dir_exists: BehaviorIfExists = "resume"


def build_config(cli: CLIConfig) -> train.Config:
    """The full training config the command line describes."""
    renderer_name = renderer_name_for(cli.model_name, cli.base_url, cli.renderer_name)
    return train.Config(
        log_path=cli.log_path,
        model_name=cli.model_name,
        base_url=cli.base_url,
        renderer_name=renderer_name,
        dataset_builder=cli.dataset_builder(cli.model_name, renderer_name, cli.base_url),
        lora_rank=cli.lora_rank if cli.lora_rank is not None else get_recommended_lora_rank(cli.model_name),
        optimizer=cli.optimizer,
        num_epochs=cli.num_epochs,
        max_steps=cli.max_steps,
        eval_every=cli.eval_every,
        save_every=cli.save_every,
        submit_ahead=cli.submit_ahead,
        wandb_project=cli.wandb_project,
        wandb_name=cli.wandb_name,
        behavior_if_log_dir_exists=cli.behavior_if_log_dir_exists,
    )


def main(cli: CLIConfig) -> CheckpointRecord:
    return train.main(build_config(cli))


if __name__ == "__main__":
    recipe_entrypoint(main, RENAMED_KEYS)
