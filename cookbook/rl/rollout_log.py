"""A readable sample of each step's rollouts in `<log_path>/rollouts.jsonl`.

Curves say whether the reward rises; reading what the policy writes says why (reward hacking
shows up here first: repeated phrases, answers that stop early). Each line is one group:
its prompt, every member's response as text and as token ids (exactly as sampled), how the
turn ended, and its reward.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cookbook.rl.types import TrajectoryGroup
from cookbook.tokenizer_utils import Tokenizer
from cookbook.utils.jsonl import append_jsonl

ROLLOUTS_FILE = "rollouts.jsonl"


def group_record(
    step: int, group_idx: int, group: TrajectoryGroup, tags: Sequence[str], tokenizer: Tokenizer
) -> dict[str, Any]:
    """One group as a JSON-ready dict (the prompt is the first observation of the first member)."""
    first_ob = group.trajectories_G[0].transitions[0].ob
    members = []
    for traj, reward in zip(group.trajectories_G, group.get_total_rewards(), strict=True):
        members.append(
            {
                "reward": reward,
                "turns": [
                    {
                        "text": tokenizer.decode(tr.ac.tokens),
                        "tokens": tr.ac.tokens,
                        "stop_reason": tr.ac.stop_reason,
                        "step_reward": tr.reward,
                    }
                    for tr in traj.transitions
                ],
            }
        )
    return {
        "step": step,
        "group": group_idx,
        "tags": list(tags),
        "prompt": tokenizer.decode(first_ob.to_ints()),
        "members": members,
    }


def log_rollouts(
    log_path: str | os.PathLike[str],
    step: int,
    groups_P: Sequence[TrajectoryGroup],
    tags_P: Sequence[Sequence[str]],
    tokenizer: Tokenizer,
    num_groups: int,
) -> None:
    """Append the first `num_groups` groups of a step to rollouts.jsonl."""
    for p, (group, tags) in enumerate(zip(groups_P[:num_groups], tags_P, strict=False)):
        append_jsonl(Path(log_path) / ROLLOUTS_FILE, group_record(step, p, group, tags, tokenizer))
