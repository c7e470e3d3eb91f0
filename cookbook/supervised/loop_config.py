"""The configuration shared by the loops that train weights over a supervised dataset (SFT, DPO).

Both loops take the same run, optimizer, checkpoint and logging settings, so they are declared
and checked once here; each loop's `Config` subclasses `LoopConfig` and adds its own fields.
"""

from __future__ import annotations

import chz

from cookbook.eval.evaluators import EvaluatorBuilder
from cookbook.supervised.types import SupervisedDatasetBuilder
from cookbook.utils.lr_scheduling import LR_SCHEDULES, LRSchedule
from cookbook.utils.run_dir import BEHAVIORS, BehaviorIfExists


def check_at_least(config: object, minimums: dict[str, int]) -> None:
    """Each field named in `minimums` is at least its bound."""
    for name, low in minimums.items():
        if getattr(config, name) < low:
            raise ValueError(f"{name} must be at least {low}, got {getattr(config, name)}")


@chz.chz
class LoopConfig:
    """Run, optimizer, checkpoint and logging settings. `lora_rank=0` trains the full weights."""

    log_path: str
    model_name: str
    dataset_builder: SupervisedDatasetBuilder
    base_url: str | None = None
    load_checkpoint_path: str | None = None  # weights-only init of a new run (e.g. a previous stage)
    renderer_name: str | None = None  # recorded in the server's run metadata
    learning_rate: float = 1e-4
    lr_schedule: LRSchedule = "linear"
    num_epochs: int = 1
    lora_rank: int = 32
    lora_seed: int | None = 0  # LoRA init seed, so that reruns are reproducible
    evaluator_builders: list[EvaluatorBuilder] = chz.field(default_factory=list)
    save_every: int = 20  # 0: only the final checkpoint
    eval_every: int = 10  # 0: evaluate only at the end
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    max_steps: int | None = None
    wandb_project: str | None = None
    wandb_name: str | None = None
    behavior_if_log_dir_exists: BehaviorIfExists = "resume"
    ttl_seconds: int | None = None  # for periodic checkpoints; the final one is kept forever

    @chz.validate
    def _check_loop(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.behavior_if_log_dir_exists not in BEHAVIORS:
            raise ValueError(f"behavior_if_log_dir_exists must be one of {BEHAVIORS}, "
                             f"got {self.behavior_if_log_dir_exists!r}")
        check_at_least(self, {"num_epochs": 1, "lora_rank": 0, "save_every": 0, "eval_every": 0})
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 or None, got {self.max_steps}")
        if self.ttl_seconds is not None and self.ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive or None, got {self.ttl_seconds}")
