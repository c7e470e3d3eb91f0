"""The settings every training run has, whatever its loop: the base of the SFT, DPO and RL configs.

Each loop's `Config` subclasses `RunConfig`, adds its own fields (its data, its loss) and may
change a default here (RL evaluates every 20 steps, DPO's optimizer starts at a lower rate);
`TrainingRun` (run.py) reads these fields to set up, resume, log and finish the run.
"""

from __future__ import annotations

import chz

from cookbook.eval.evaluators import EvaluatorBuilder
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from cookbook.utils.run_dir import BEHAVIORS, BehaviorIfExists


def check_at_least(config: object, minimums: dict[str, int]) -> None:
    """Each field named in `minimums` is at least its bound."""
    for name, low in minimums.items():
        if getattr(config, name) < low:
            raise ValueError(f"{name} must be at least {low}, got {getattr(config, name)}")


@chz.chz
class RunConfig:
    """Where a run logs, what it trains, where it starts, how often it saves and evaluates, and its
    optimizer. `lora_rank=0` trains the full weights."""

    log_path: str
    model_name: str
    base_url: str | None = None  # None: the bundled local server
    load_checkpoint_path: str | None = None  # weights-only init of a new run (e.g. a previous stage)
    renderer_name: str | None = None  # recorded in the server's run metadata
    lora_rank: int = 32
    lora_seed: int | None = 0  # LoRA init seed, so that reruns are reproducible
    optimizer: OptimizerConfig = optimizer_defaults()
    save_every: int = 20  # 0: only the final checkpoint
    eval_every: int = 10
    evaluator_builders: list[EvaluatorBuilder] = chz.field(default_factory=list)
    max_steps: int | None = None
    wandb_project: str | None = None
    wandb_name: str | None = None
    behavior_if_log_dir_exists: BehaviorIfExists = "resume"
    ttl_seconds: int | None = None  # for periodic checkpoints; the final one is kept forever

    @chz.validate
    def _check_run(self) -> None:
        if self.behavior_if_log_dir_exists not in BEHAVIORS:
            raise ValueError(
                f"behavior_if_log_dir_exists must be one of {BEHAVIORS}, "
                f"got {self.behavior_if_log_dir_exists!r}"
            )
        check_at_least(self, {"lora_rank": 0, "save_every": 0, "eval_every": 0})
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 or None, got {self.max_steps}")
        if self.ttl_seconds is not None and self.ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive or None, got {self.ttl_seconds}")
