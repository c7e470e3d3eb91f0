"""DPO on comparisons: `python -m cookbook.recipes.preference.dpo.train [key=value ...]`.

The defaults run the embedded default end to end: the built-in "tiny-llama" (full weights) on
the bundled comparisons, judged at every evaluation by the bundled data's gold rule
(`test/gold_win_rate`, sampled and greedy) against the data set's chosen answers.

DPO needs a policy that already speaks the task: from a randomly initialised model its
reference knows nothing and the objective only shuffles noise. So the recipe starts from
`load_checkpoint_path` (an SFT run's final `state_path`) when given; otherwise it first runs the
`sl_basic` SFT recipe (its settings under `sft.`: `sft.dataset`, bundled chat data by default,
`sft.optimizer.learning_rate`, ...; `sft.steps` caps it) into `<log_path>/sft` and starts DPO from
its final checkpoint. DPO itself logs into `<log_path>/dpo`.
Both stages resume from their own checkpoints.jsonl when re-run, and a finished stage is not run
again.

Defaults for tiny-llama (one epoch of the bundled comparisons: 250 steps of 16 pairs). Plain
DPO (nll_coef=0) separates chosen from rejected answers but lowers the likelihood of both, and
sampled answers get worse by the gold rule; adding the chosen answers' NLL to the loss, with
beta 0.5, keeps the policy on the data. The README has the measurements. Any other model starts
from the pretrained-model defaults of `cookbook/model_config.py` (LoRA, the pipeline's SFT stage,
40 DPO steps of 8 pairs; `bench/bench_dpo_real.py` measures them on SmolLM2).

Examples:
    python -m cookbook.recipes.preference.dpo.train
    python -m cookbook.recipes.preference.dpo.train max_steps=20 sft.steps=100 log_path=/tmp/dpo-try
    python -m cookbook.recipes.preference.dpo.train dataset=Anthropic/hh-rlhf model_name=<hf dir> \\
        load_checkpoint_path=tinker://<sft run>/weights/final lora_rank=32 gold_eval=False
"""

from __future__ import annotations

import functools
import logging
import os

import chz

from cookbook.model_config import (
    BUILTIN_MODEL_NAME,
    get_recommended_lora_rank,
    model_kind,
    recipe_defaults,
    renderer_name_for,
)
from cookbook.preference import train_dpo
from cookbook.preference.dpo_datasets import DPODatasetBuilderFromComparisons
from cookbook.preference.evaluators import ComparisonEvaluatorBuilder
from cookbook.recipes import sl_basic
from cookbook.recipes.preference.datasets import BUNDLED, comparison_builder
from cookbook.recipes.renamed_keys import OPTIMIZER_KEYS, recipe_entrypoint
from cookbook.recipes.sl_basic import ChatSFT
from cookbook.supervised import train as supervised_train
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig
from cookbook.utils.checkpoints import CheckpointRecord
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from cookbook.utils.run_dir import BehaviorIfExists

logger = logging.getLogger(__name__)

DEFAULT_LOG_PATH = "/tmp/cookbook-runs/dpo"
RENAMED_KEYS: dict[str, str] = {**OPTIMIZER_KEYS, "sft_dataset": "sft.dataset", "sft_steps": "sft.steps"}


@chz.chz
class SFTStage(ChatSFT):
    """The SFT stage that gives DPO a policy to start from: the sl_basic recipe (its settings under
    `sft.`, `dataset` in the no_robots schema), into `<log_path>/sft`."""

    steps: int | None = None  # None: sl_basic's full schedule; 0: no SFT stage (DPO from the base model)


@chz.chz
class CLIConfig:
    """Everything has a default for the built-in model on the bundled data."""

    log_path: str = DEFAULT_LOG_PATH  # holds sft/ (if run) and dpo/
    base_url: str | None = None  # None: start the bundled local server
    model_name: str = BUILTIN_MODEL_NAME
    renderer_name: str | None = None  # None: the model's recommended chat format
    lora_rank: int | None = None  # None: full weights for tiny-llama, LoRA rank 32 otherwise
    dataset: str = BUNDLED  # hh-rlhf schema: "bundled", a hub id, or a local file / directory
    test_size: int = 400
    max_length: int | None = None
    load_checkpoint_path: str | None = None  # an SFT state path; None runs the SFT stage first
    sft: SFTStage = chz.field(default_factory=SFTStage)
    # DPO (tuned on tiny-llama + bundled data: see the module docstring)
    optimizer: OptimizerConfig = optimizer_defaults(learning_rate=3e-4)
    dpo_beta: float = 0.5
    nll_coef: float = 1.0  # weight of the chosen answers' NLL added to the DPO loss (0 = plain DPO)
    batch_size: int = 16  # comparisons (pairs) per step
    num_epochs: int = 1
    eval_every: int = 25
    save_every: int = 50
    max_steps: int | None = None
    eval_comparisons: int = 200  # test prompts for the win rate against the chosen answers
    eval_max_tokens: int = 32
    gold_eval: bool | None = None  # judge with the bundled gold rule; None: only on the bundled data
    behavior_if_log_dir_exists: BehaviorIfExists = "resume"


def _renderer_name(cli: CLIConfig) -> str:
    return renderer_name_for(cli.model_name, cli.base_url, cli.renderer_name)


def _lora_rank(cli: CLIConfig) -> int:
    return cli.lora_rank if cli.lora_rank is not None else get_recommended_lora_rank(cli.model_name)


def sft_config(cli: CLIConfig) -> supervised_train.Config:
    """The SFT stage: sl_basic into `<log_path>/sft`."""
    return sl_basic.build_config(
        sl_basic.CLIConfig(
            log_path=os.path.join(cli.log_path, "sft"),
            base_url=cli.base_url,
            model_name=cli.model_name,
            dataset=cli.sft.dataset,
            batch_size=cli.sft.batch_size,
            max_length=cli.sft.max_length,
            num_epochs=cli.sft.num_epochs,
            eval_every=cli.sft.eval_every,
            optimizer=cli.sft.optimizer,
            renderer_name=_renderer_name(cli),
            lora_rank=_lora_rank(cli),
            max_steps=cli.sft.steps,
            behavior_if_log_dir_exists=cli.behavior_if_log_dir_exists,
        )
    )


def dpo_config(cli: CLIConfig, start_path: str | None) -> train_dpo.Config:
    comparisons = comparison_builder(cli.dataset, cli.test_size)
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=cli.model_name,
        renderer_name=_renderer_name(cli),
        max_length=cli.max_length,
        batch_size=cli.batch_size,
        base_url=cli.base_url,
    )
    gold = cli.dataset == BUNDLED if cli.gold_eval is None else cli.gold_eval
    evaluators = (
        [
            ComparisonEvaluatorBuilder(
                comparison_builder=comparisons,
                renderer_name=_renderer_name(cli),
                model_name_for_tokenizer=cli.model_name,
                max_tokens=cli.eval_max_tokens,
                temperature=temperature,
                num_comparisons=cli.eval_comparisons,
                gold=True,
            )
            for temperature in (1.0, 0.0)
        ]
        if gold
        else []
    )
    return train_dpo.Config(
        log_path=os.path.join(cli.log_path, "dpo"),
        model_name=cli.model_name,
        base_url=cli.base_url,
        renderer_name=_renderer_name(cli),
        dataset_builder=DPODatasetBuilderFromComparisons(
            common_config=common, comparison_builder=comparisons
        ),
        load_checkpoint_path=start_path,
        optimizer=cli.optimizer,
        dpo_beta=cli.dpo_beta,
        nll_coef=cli.nll_coef,
        lora_rank=_lora_rank(cli),
        num_epochs=cli.num_epochs,
        eval_every=cli.eval_every,
        save_every=cli.save_every,
        max_steps=cli.max_steps,
        evaluator_builders=evaluators,
        behavior_if_log_dir_exists=cli.behavior_if_log_dir_exists,
    )


def start_path_of(cli: CLIConfig) -> str | None:
    """DPO's starting weights: `load_checkpoint_path`, else the SFT stage's final state (run or resumed
    now), else (`sft.steps=0`) None, the base model."""
    if cli.load_checkpoint_path is not None:
        return cli.load_checkpoint_path
    if cli.sft.steps == 0:
        if model_kind(cli.model_name) == "random_init":
            logger.warning(
                "sft.steps=0 and no load_checkpoint_path: DPO starts from the random-init base model, "
                "whose reference knows nothing; expect no meaningful learning"
            )
        return None
    return supervised_train.main(sft_config(cli)).state_path


def main(cli: CLIConfig) -> CheckpointRecord:
    """Run (or resume) the SFT stage if needed, then DPO; returns DPO's final checkpoint record."""
    return train_dpo.main(dpo_config(cli, start_path_of(cli)))


if __name__ == "__main__":
    recipe_entrypoint(main, RENAMED_KEYS, functools.partial(recipe_defaults, "dpo"))
