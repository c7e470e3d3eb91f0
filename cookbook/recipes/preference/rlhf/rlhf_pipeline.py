"""Three-stage RLHF: SFT -> preference model -> RL against it, in one command.

    python -m cookbook.recipes.preference.rlhf.rlhf_pipeline                 # the embedded default
    python -m cookbook.recipes.preference.rlhf.rlhf_pipeline max_steps=2 log_path=/tmp/rlhf-try
    python -m cookbook.recipes.preference.rlhf.rlhf_pipeline base_url=http://gpu-box:8000 \\
        model_name=<hf dir> sft.dataset=HuggingFaceH4/no_robots comparison_dataset=Anthropic/hh-rlhf
    python -m cookbook.recipes.preference.rlhf.rlhf_pipeline rm.steps=200 rl.kl_penalty_coef=0.05 \\
        sft.optimizer.learning_rate=1e-3

Settings shared by the stages (model_name, base_url, log_path, seed, ...) are top-level keys;
each stage's own are nested under its name (`sft.*`, `rm.*`, `rl.*`, the optimizer under
`<stage>.optimizer.*`). The defaults run on the built-in "tiny-llama" (full-weight training)
over the bundled data, against the auto-started local server:

1. `sft`: supervised fine-tuning on chat data (the `sl_basic` recipe's settings, 5 epochs);
   `test/nll` on held-out answers.
2. `rm`: a preference model, initialised from the SFT weights, trained to write " A" or " B"
   after a rendered comparison (both orders of every pair in the same batch). Its accuracy is
   measured on held-out comparisons in both orders: `test/accuracy`, per kind of difference
   (`test/accuracy/correctness`: the two answers differ only in being right or wrong, ...).
3. `rl`: the SFT policy answers each training prompt `rl.group_size` times; the preference
   model judges every ordered pair of answers and each answer's reward is its win fraction
   (minus 1 if it did not end properly), with a KL penalty to the SFT policy. Evaluated at
   step 0, every `rl.eval_every` steps and at the end against the data set's chosen answers:
   `test/win_rate` (sampled at temperature 1, judged by the preference model in both orders),
   `test/greedy_win_rate`, and on the bundled data `test/gold_win_rate` (judged by the rule
   that labelled the data, which a policy cannot fool: reward hacking shows as a learned-judge
   win rate that rises while the gold one falls). On the bundled data the rule also judges every
   training matchup: `env/all/judge_agreement[/<kind>]` is how often the preference model agreed
   with it on the policy's own answers, i.e. how accurate the reward is where RL uses it.

`rm.kind=scalar` swaps stages 2 and 3 for the classic recipe: a scalar reward model (a reward
head on the SFT weights, trained with the Bradley-Terry loss on each [chosen, rejected] pair;
`test/accuracy` is chosen scored above rejected, also per kind) and RL whose reward is each
answer's own score, with twice the KL coefficient (`KL_PENALTY_COEF`; `rl.kl_penalty_mode=sequence`
for r_θ - λ·KL per answer, `rl.advantage_mode=batch` for batch-normalised advantages); the reward
model's scores are logged beside the win rates (`test/reward_model_score`).

Stages log under `<log_path>/{sft,rm,rl}` and resume from their own checkpoints.jsonl; a stage
that finished is skipped when the pipeline is run again. At the end the pipeline prints each
stage's headline metrics (first -> last) and wall time, writes `<log_path>/pipeline_summary.json`
and draws `<log_path>/rlhf_curves.png`.
"""

from __future__ import annotations

import sys

from cookbook.client.local_server import prestart_shared_local_server

if __name__ == "__main__":  # the bundled server starts up (about 2 s) beside the imports below
    prestart_shared_local_server(sys.argv[1:])

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import chz

from cookbook.client.types import RLLossFnType
from cookbook.eval.evaluators import EvaluatorBuilder
from cookbook.model_config import (
    BUILTIN_MODEL_NAME,
    get_recommended_lora_rank,
    recipe_defaults,
    renderer_name_for,
)
from cookbook.preference import train_reward_model
from cookbook.preference.comparison_datasets import (
    ChatDatasetBuilderFromComparisons,
    ComparisonDatasetBuilder,
)
from cookbook.preference.evaluators import ComparisonEvaluatorBuilder, PreferenceAccuracyEvaluatorBuilder
from cookbook.preference.gold import GoldPreferenceModelBuilder
from cookbook.preference.preference_model import PreferenceModelBuilderFromChatRenderer
from cookbook.preference.reward_datasets import RewardDatasetBuilderFromComparisons
from cookbook.preference.reward_evaluator import RewardAccuracyEvaluatorBuilder
from cookbook.preference.reward_model import RewardModelBuilder
from cookbook.preference.types import PreferenceModelBuilder
from cookbook.recipes.preference.datasets import BUNDLED, comparison_builder
from cookbook.recipes.preference.rlhf.report import (
    STAGES,
    format_summary,
    plot_pipeline_curves,
    summarize_pipeline,
)
from cookbook.recipes.preference.rlhf.seeded_data import SeededDatasetBuilder
from cookbook.recipes.renamed_keys import recipe_entrypoint
from cookbook.recipes.sl_basic import ChatSFT
from cookbook.rl import train as rl_train
from cookbook.rl.advantages import AdvantageMode
from cookbook.rl.kl_penalty import KLPenaltyMode
from cookbook.rl.preference_envs import PairwisePreferenceRLDatasetBuilder
from cookbook.rl.reward_model_envs import RewardModelRLDatasetBuilder
from cookbook.rl.tournament import TournamentPattern
from cookbook.rl.types import RLDatasetBuilder
from cookbook.supervised import train as supervised_train
from cookbook.supervised.loop_config import SupervisedRunConfig
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig, SupervisedDatasetBuilder
from cookbook.utils.checkpoints import CheckpointRecord, get_last_checkpoint
from cookbook.utils.jsonable import write_json
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from cookbook.utils.progress import console_write
from cookbook.utils.run_dir import BehaviorIfExists

logger = logging.getLogger(__name__)

DEFAULT_LOG_PATH = "/tmp/cookbook-runs/rlhf"
SUMMARY_FILE = "pipeline_summary.json"

PreferenceKind = Literal["pairwise", "scalar"]
RM_PATH_KEY: dict[str, str] = {"pairwise": "sampler_path", "scalar": "state_path"}
"""What RL reads of the rm stage's final checkpoint: a pairwise judge samples, a scalar model runs forward."""
KL_PENALTY_COEF: dict[str, float] = {"pairwise": 0.1, "scalar": 0.2}
"""RL's KL coefficient when `rl.kl_penalty_coef` is unset. A win fraction lies in [0, 1]; a reward model's
score does not, and at 0.1 RL over-optimised it (bench/README.md, "Clipped preference-model gradients")."""


@chz.chz
class SFTStage(ChatSFT):
    """Stage 1: supervised fine-tuning on chat data (`dataset`: no_robots schema)."""

    run: bool = True  # False: reuse the finished stage already in <log_path>/sft
    # A policy that answers correctly more often turns RL's style gains into larger gold gains.
    num_epochs: int = 5
    steps: int | None = None  # None: every batch of every epoch


@chz.chz
class RMStage:
    """Stage 2: the preference model, from the SFT weights: a pairwise judge, or a scalar reward model."""

    run: bool = True
    kind: PreferenceKind = "pairwise"
    centering_coef: float = 0.0  # scalar: adds centering_coef * (r_c + r_r)² to the Bradley-Terry loss
    batch_size: int = 32  # sequences: half as many comparisons, each in both orders
    num_epochs: int = 2
    steps: int | None = 400  # test accuracy levels off before this
    max_length: int | None = None
    eval_every: int = 100
    # Clipping as SFT does: a few steps' gradients, 10x the usual, otherwise swing Adam and leave
    # one seed's judge in five at 0.87 test accuracy instead of 0.93-0.97 (bench/README.md, "Clipped").
    optimizer: OptimizerConfig = optimizer_defaults(
        learning_rate=1e-3, lr_schedule="cosine", lr_warmup_steps=20, grad_clip_norm=1.0
    )


@chz.chz
class RLStage:
    """Stage 3: RL from the SFT weights against the preference model, with a KL penalty to the SFT policy."""

    run: bool = True
    steps: int = 30  # the curves level off by then
    batch_size: int = 16  # prompts (groups) per step
    group_size: int = 4  # answers per prompt, judged against each other
    max_tokens: int = 32
    loss_fn: RLLossFnType = "importance_sampling"
    num_substeps: int = 1
    kl_penalty_coef: float | None = None  # None: KL_PENALTY_COEF[rm.kind]
    kl_penalty_mode: KLPenaltyMode = "token"
    advantage_mode: AdvantageMode = "group"
    tournament_pattern: TournamentPattern = TournamentPattern.ALL_PAIRS_BOTH_WAYS
    format_penalty: float = -1.0
    # The judge scores a step's matchups in one forward pass; only a judgement whose label logprobs do not
    # settle its greedy label asks a sample request for the top-k, and a trained judge rarely needs more than 2.
    judge_topk: int = 2
    eval_every: int = 10
    eval_comparisons: int = 200
    greedy_eval: bool = True
    gold_eval: bool | None = None  # the bundled data's gold rule; None: only on the bundled comparisons
    optimizer: OptimizerConfig = optimizer_defaults(learning_rate=5e-4, lr_schedule="constant")


@chz.chz
class PipelineConfig:
    """Every default is tuned for the built-in tiny model on the bundled data (see the module docstring)."""

    model_name: str = BUILTIN_MODEL_NAME
    base_url: str | None = None  # None: start the bundled local server
    log_path: str = DEFAULT_LOG_PATH  # holds sft/, rm/ and rl/
    renderer_name: str | None = None  # None: the model's recommended chat format
    lora_rank: int | None = None  # None: 0 (full weights) for tiny-llama, LoRA rank 32 otherwise
    seed: int = 0
    comparison_dataset: str = (
        BUNDLED  # hh-rlhf schema: "bundled", a hub id, a local file / directory; or a feedback *.sqlite
    )
    comparison_test_size: int = (
        400  # held-out comparisons for the preference model's accuracy and RL's evaluations
    )
    save_every: int = 50
    max_steps: int | None = None  # caps every stage (smoke tests)
    wandb_project: str | None = None
    behavior_if_log_dir_exists: BehaviorIfExists = "resume"
    sft: SFTStage = chz.field(default_factory=SFTStage)
    rm: RMStage = chz.field(default_factory=RMStage)
    rl: RLStage = chz.field(default_factory=RLStage)

    @chz.validate
    def _check(self) -> None:
        for name, value in (
            ("max_steps", self.max_steps),
            ("sft.steps", self.sft.steps),
            ("rm.steps", self.rm.steps),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value}")
        for name, value in (
            ("rl.steps", self.rl.steps),
            ("rl.eval_comparisons", self.rl.eval_comparisons),
            ("comparison_test_size", self.comparison_test_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.rm.kind not in RM_PATH_KEY:
            raise ValueError(f"rm.kind must be one of {tuple(RM_PATH_KEY)}, got {self.rm.kind!r}")

    @property
    def kl_penalty_coef(self) -> float:
        """RL's KL coefficient: `rl.kl_penalty_coef`, else the preference kind's default."""
        if self.rl.kl_penalty_coef is not None:
            return self.rl.kl_penalty_coef
        return KL_PENALTY_COEF[self.rm.kind]

    @property
    def renderer(self) -> str:
        return renderer_name_for(self.model_name, self.base_url, self.renderer_name)

    @property
    def rank(self) -> int:
        return self.lora_rank if self.lora_rank is not None else get_recommended_lora_rank(self.model_name)

    @property
    def use_gold(self) -> bool:
        return self.comparison_dataset == BUNDLED if self.rl.gold_eval is None else self.rl.gold_eval

    def stage_dir(self, stage: str) -> str:
        return os.path.join(self.log_path, stage)

    def capped(self, steps: int | None) -> int | None:
        """A stage's step count under the global `max_steps` cap."""
        if self.max_steps is None:
            return steps
        return self.max_steps if steps is None else min(steps, self.max_steps)

    def comparisons(self) -> ComparisonDatasetBuilder:
        return comparison_builder(self.comparison_dataset, self.comparison_test_size)

    def wandb_name(self, stage: str) -> str | None:
        return f"rlhf-{stage}" if self.wandb_project else None


RENAMED_KEYS: dict[str, str] = {
    "base_model": "model_name",
    "rm_test_size": "comparison_test_size",
    "run_sft": "sft.run",
    "sft_dataset": "sft.dataset",
    "sft_learning_rate": "sft.optimizer.learning_rate",
    "sft_batch_size": "sft.batch_size",
    "sft_num_epochs": "sft.num_epochs",
    "sft_steps": "sft.steps",
    "sft_max_length": "sft.max_length",
    "sft_eval_every": "sft.eval_every",
    "run_rm": "rm.run",
    "rm_learning_rate": "rm.optimizer.learning_rate",
    "rm_lr_schedule": "rm.optimizer.lr_schedule",
    "rm_lr_warmup_steps": "rm.optimizer.lr_warmup_steps",
    "rm_grad_clip_norm": "rm.optimizer.grad_clip_norm",
    "rm_batch_size": "rm.batch_size",
    "rm_num_epochs": "rm.num_epochs",
    "rm_steps": "rm.steps",
    "rm_max_length": "rm.max_length",
    "rm_eval_every": "rm.eval_every",
    "run_rl": "rl.run",
    "rl_learning_rate": "rl.optimizer.learning_rate",
    "rl_lr_schedule": "rl.optimizer.lr_schedule",
    "rl_steps": "rl.steps",
    "rl_batch_size": "rl.batch_size",
    "rl_group_size": "rl.group_size",
    "rl_max_tokens": "rl.max_tokens",
    "rl_loss_fn": "rl.loss_fn",
    "rl_num_substeps": "rl.num_substeps",
    "kl_penalty_coef": "rl.kl_penalty_coef",
    "kl_penalty_mode": "rl.kl_penalty_mode",
    "tournament_pattern": "rl.tournament_pattern",
    "format_penalty": "rl.format_penalty",
    "judge_topk": "rl.judge_topk",
    "rl_eval_every": "rl.eval_every",
    "rl_eval_comparisons": "rl.eval_comparisons",
    "greedy_eval": "rl.greedy_eval",
    "gold_eval": "rl.gold_eval",
}
"""The pipeline's flat keys before the stages were nested, and their spelling now."""


# ---------------------------------------------------------------------------------------------
# The three stages' configs
# ---------------------------------------------------------------------------------------------


StageConfig = TypeVar("StageConfig", bound=SupervisedRunConfig)


def _supervised_stage(
    config: PipelineConfig,
    stage: str,
    dataset_builder: SupervisedDatasetBuilder,
    loop: type[StageConfig] = supervised_train.Config,
    **settings: Any,
) -> StageConfig:
    """A `loop` stage into `<log_path>/<stage>`; its data order also follows the pipeline's seed."""
    return loop(
        log_path=config.stage_dir(stage),
        model_name=config.model_name,
        base_url=config.base_url,
        renderer_name=config.renderer,
        lora_rank=config.rank,
        dataset_builder=SeededDatasetBuilder(inner=dataset_builder, seed=config.seed),
        save_every=config.save_every,
        wandb_project=config.wandb_project,
        wandb_name=config.wandb_name(stage),
        behavior_if_log_dir_exists=config.behavior_if_log_dir_exists,
        **settings,
    )


def sft_config(config: PipelineConfig) -> supervised_train.Config:
    """Stage 1: chat SFT from the base model, into `<log_path>/sft`."""
    sft = config.sft
    return _supervised_stage(
        config,
        "sft",
        sft.dataset_builder(config.model_name, config.renderer, config.base_url),
        optimizer=sft.optimizer,
        num_epochs=sft.num_epochs,
        max_steps=config.capped(sft.steps),
        eval_every=sft.eval_every,
    )


def _rm_stage(
    config: PipelineConfig,
    sft_state_path: str | None,
    loop: type[StageConfig],
    data: Callable[..., SupervisedDatasetBuilder],
    accuracy: Callable[..., EvaluatorBuilder],
    batch_size: int,
    **settings: Any,
) -> StageConfig:
    """The reward-model stage of either kind: the train comparisons rendered as `data`, batched by
    `batch_size`, scored on the test comparisons by `accuracy`, from `sft_state_path` (None: the base model)."""
    rm = config.rm
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=config.model_name,
        renderer_name=config.renderer,
        max_length=rm.max_length,
        batch_size=batch_size,
        base_url=config.base_url,
    )
    comparisons = config.comparisons()
    return _supervised_stage(
        config,
        "rm",
        data(common_config=common, comparison_builder=comparisons, include_test_set=False),
        loop,
        evaluator_builders=[accuracy(common_config=common, comparison_builder=comparisons)],
        load_checkpoint_path=sft_state_path,
        optimizer=rm.optimizer,
        num_epochs=rm.num_epochs,
        max_steps=config.capped(rm.steps),
        eval_every=rm.eval_every,
        **settings,
    )


def rm_config(config: PipelineConfig, sft_state_path: str | None) -> supervised_train.Config:
    """Stage 2: the preference model, from the SFT weights (fresh optimizer; None: from the base model),
    into `<log_path>/rm`."""
    return _rm_stage(
        config,
        sft_state_path,
        supervised_train.Config,
        ChatDatasetBuilderFromComparisons,
        PreferenceAccuracyEvaluatorBuilder,
        config.rm.batch_size,
    )


def reward_model_config(config: PipelineConfig, sft_state_path: str) -> train_reward_model.Config:
    """Stage 2 with `rm.kind=scalar`: a reward head on the SFT weights, Bradley-Terry on each pair."""
    return _rm_stage(
        config,
        sft_state_path,
        train_reward_model.Config,
        RewardDatasetBuilderFromComparisons,
        RewardAccuracyEvaluatorBuilder,
        config.rm.batch_size // 2,  # a batch counts pairs: as many sequences per step as the pairwise kind
        centering_coef=config.rm.centering_coef,
    )


def preference_model_builder(config: PipelineConfig, rm_path: str) -> PreferenceModelBuilder:
    """The judge RL trains against: the pairwise model's sampler weights, or the scalar model's state."""
    if config.rm.kind == "scalar":
        return RewardModelBuilder(
            renderer_name=config.renderer,
            model_name=config.model_name,
            rm_weights_path=rm_path,
            base_url=config.base_url,
        )
    return PreferenceModelBuilderFromChatRenderer(
        renderer_name=config.renderer,
        model_name=config.model_name,
        rm_weights_path=rm_path,
        base_url=config.base_url,
        topk=config.rl.judge_topk,
    )


def rl_dataset_builder(config: PipelineConfig, judge: PreferenceModelBuilder) -> RLDatasetBuilder:
    """The prompts of the train comparisons, rewarded by a tournament of the pairwise judge or each answer's score."""
    rl = config.rl
    prompts: dict[str, Any] = {
        "comparison_builder": config.comparisons(),
        "batch_size": rl.batch_size,
        "policy_renderer_name": config.renderer,
        "policy_model_name": config.model_name,
        "group_size": rl.group_size,
        "format_penalty": rl.format_penalty,
        "shuffle_seed": config.seed,
        "base_url": config.base_url,
        "audit_model_builder": GoldPreferenceModelBuilder() if config.use_gold else None,
    }
    if config.rm.kind == "scalar":
        return RewardModelRLDatasetBuilder(reward_model_builder=judge, **prompts)
    return PairwisePreferenceRLDatasetBuilder(
        preference_model_builder=judge, tournament_pattern=rl.tournament_pattern, **prompts
    )


def rl_evaluator_builders(
    config: PipelineConfig,
    judge: PreferenceModelBuilder,
) -> list[ComparisonEvaluatorBuilder]:
    """Win rates against the chosen answers of the test comparisons: sampled (T=1), and greedy."""
    temperatures = (1.0, 0.0) if config.rl.greedy_eval else (1.0,)
    return [
        ComparisonEvaluatorBuilder(
            comparison_builder=config.comparisons(),
            renderer_name=config.renderer,
            model_name_for_tokenizer=config.model_name,
            max_tokens=config.rl.max_tokens,
            preference_model_builder=judge,
            temperature=temperature,
            num_comparisons=config.rl.eval_comparisons,
            gold=config.use_gold,
            seed=config.seed,
        )
        for temperature in temperatures
    ]


def rl_config(config: PipelineConfig, sft: CheckpointRecord, rm_path: str) -> rl_train.Config:
    """Stage 3: RL from the SFT weights against the preference model, KL to the SFT policy, into `<log_path>/rl`.
    `rm_path` is the rm stage's final checkpoint path named by `RM_PATH_KEY[rm.kind]`."""
    rl = config.rl
    judge = preference_model_builder(config, rm_path)
    dataset = rl_dataset_builder(config, judge)
    return rl_train.Config(
        log_path=config.stage_dir("rl"),
        model_name=config.model_name,
        base_url=config.base_url,
        renderer_name=config.renderer,
        lora_rank=config.rank,
        load_checkpoint_path=sft.state_path,
        dataset_builder=dataset,
        max_tokens=rl.max_tokens,
        optimizer=rl.optimizer,
        loss_fn=rl.loss_fn,
        num_substeps=rl.num_substeps,
        kl_penalty_coef=config.kl_penalty_coef,
        kl_penalty_mode=rl.kl_penalty_mode,
        advantage_mode=rl.advantage_mode,
        kl_reference_path=sft.sampler_path or sft.state_path,
        eval_every=rl.eval_every,
        save_every=config.save_every,
        evaluator_builders=list(rl_evaluator_builders(config, judge)),
        max_steps=config.capped(rl.steps),
        seed=config.seed,
        wandb_project=config.wandb_project,
        wandb_name=config.wandb_name("rl"),
        behavior_if_log_dir_exists=config.behavior_if_log_dir_exists,
    )


# ---------------------------------------------------------------------------------------------
# Running them
# ---------------------------------------------------------------------------------------------

StageClock = Callable[[], Callable[[], dict[str, Any]]]
"""Started when a stage starts; the function it returns gives what the stage cost (`wall_s`, ...)."""


def wall_clock() -> Callable[[], dict[str, float]]:
    start = time.perf_counter()
    return lambda: {"wall_s": time.perf_counter() - start}


def finished_checkpoint(stage_dir: str) -> CheckpointRecord | None:
    """The stage's "final" checkpoint record, if the stage has finished."""
    if not Path(stage_dir).is_dir():
        return None
    last = get_last_checkpoint(stage_dir)
    return last if last is not None and last.final else None


class StageLog:
    """Which stages ran in this invocation ("ran", "skipped" when already finished, "off") and what they cost."""

    def __init__(self, config: PipelineConfig, clock: StageClock):
        self.config = config
        self.clock = clock
        self.stages: dict[str, dict[str, Any]] = {stage: {"status": "off"} for stage in STAGES}

    def finished(self, stage: str, enabled: bool) -> CheckpointRecord | None:
        """The stage's final record when it is to be skipped; None when it is to run."""
        stage_dir = self.config.stage_dir(stage)
        done = finished_checkpoint(stage_dir)
        if done is not None and (not enabled or self.config.behavior_if_log_dir_exists == "resume"):
            console_write(
                f"[rlhf] stage {stage}: already finished in {stage_dir}; skipping it "
                "(use another log_path, or behavior_if_log_dir_exists=overwrite, to train it again)"
            )
            self.stages[stage] = {"status": "skipped"}
            return done
        if not enabled:
            raise ValueError(
                f"{stage}.run=False, but {stage_dir} holds no finished {stage} stage for the next "
                f"stage to start from; run it ({stage}.run=True) or point log_path at a pipeline "
                "that has it"
            )
        return None

    @contextmanager
    def running(self, stage: str) -> Iterator[None]:
        console_write(f"[rlhf] stage {stage}: training into {self.config.stage_dir(stage)}")
        stop = self.clock()
        yield
        self.stages[stage] = {"status": "ran", **stop()}


def run_sft(config: PipelineConfig, log: StageLog) -> CheckpointRecord:
    if (done := log.finished("sft", config.sft.run)) is not None:
        return done
    with log.running("sft"):
        return supervised_train.main(sft_config(config))


def run_rm(config: PipelineConfig, log: StageLog, sft: CheckpointRecord) -> CheckpointRecord:
    if (done := log.finished("rm", config.rm.run)) is not None:
        return done
    with log.running("rm"):
        sft_state_path = _path_of(sft, "state_path", "sft")
        if config.rm.kind == "scalar":
            return train_reward_model.main(reward_model_config(config, sft_state_path))
        return supervised_train.main(rm_config(config, sft_state_path))


def run_rl(
    config: PipelineConfig, log: StageLog, sft: CheckpointRecord, rm: CheckpointRecord
) -> CheckpointRecord:
    if (done := log.finished("rl", config.rl.run)) is not None:
        return done
    with log.running("rl"):
        return rl_train.main(rl_config(config, sft, _path_of(rm, RM_PATH_KEY[config.rm.kind], "rm")))


def main(config: PipelineConfig, clock: StageClock = wall_clock) -> dict[str, Any]:
    """Run (or resume) the stages asked for; returns the summary also written to pipeline_summary.json.

    A stage that is off is taken, finished, from its log dir when a later stage starts from it.
    `clock` measures each stage (the benchmark passes one that also counts CPU seconds).
    """
    wall_start = time.perf_counter()
    log = StageLog(config, clock)
    finals: dict[str, CheckpointRecord] = {}
    if config.sft.run or config.rm.run or config.rl.run:
        finals["sft"] = run_sft(config, log)
    if config.rm.run or config.rl.run:
        finals["rm"] = run_rm(config, log, finals["sft"])
    if config.rl.run:
        finals["rl"] = run_rl(config, log, finals["sft"], finals["rm"])

    summaries = summarize_pipeline(config.log_path)
    plot = plot_pipeline_curves(config.log_path)
    summary = {
        "log_path": config.log_path,
        "seed": config.seed,
        "wall_s": time.perf_counter() - wall_start,
        "stages": {
            stage: {
                **log.stages[stage],
                "final": finals[stage].to_dict() if stage in finals else None,
                "headline": {k: s.to_dict() for k, s in summaries[stage].items()},
            }
            for stage in STAGES
        },
        "plot": str(plot),
    }
    write_json(Path(config.log_path) / SUMMARY_FILE, summary)
    ran = {stage: entry["wall_s"] for stage, entry in log.stages.items() if entry["status"] == "ran"}
    console_write(
        "[rlhf] summary (first -> last):\n"
        + format_summary(summaries, ran)
        + f"\n[rlhf] curves: {plot}\n[rlhf] total wall time {summary['wall_s']:.0f} s"
    )
    return summary


def _path_of(record: CheckpointRecord, key: str, stage: str) -> str:
    path = getattr(record, key)
    if not path:
        raise ValueError(f"the {stage} stage's final checkpoint {record.name!r} has no {key}")
    return path


if __name__ == "__main__":
    recipe_entrypoint(main, RENAMED_KEYS, functools.partial(recipe_defaults, "rlhf_pipeline"))
