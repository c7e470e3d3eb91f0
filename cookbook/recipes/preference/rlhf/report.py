"""What the three RLHF stages learned: their headline curves, summarised and drawn together.

Each stage's own metrics.jsonl is the record; this module reads them back (so a summary of a
resumed or partly skipped pipeline still covers every stage) and reduces each headline curve to
first / last / min / max, which is what the pipeline prints at the end and the benchmark checks
against its targets. The combined figure puts the curves of all stages side by side.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cookbook.utils.ml_log import METRICS_FILE
from cookbook.utils.plotting import Curve, load_curves, place_panels

STAGES: tuple[str, ...] = ("sft", "rm", "rl")
STAGE_TITLES: dict[str, str] = {"sft": "SFT", "rm": "preference model", "rl": "RL"}
HEADLINE_KEYS: dict[str, tuple[str, ...]] = {
    "sft": ("test/nll",),
    "rm": ("test/nll", "test/accuracy", "test/accuracy/correctness"),
    "rl": (
        "test/win_rate",
        "test/win_rate_soft",
        "test/greedy_win_rate",
        "test/gold_win_rate",
        "test/greedy_gold_win_rate",
        "kl_policy_ref",
        "env/all/judge_agreement",
        "env/all/judge_agreement/correctness",
    ),
}
"""Per stage, the curves that show whether it learned (the first of each is its main one)."""

PLOT_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sft", "SFT test/nll", ("test/nll",)),
    ("rm", "PM test/nll", ("test/nll",)),
    ("rm", "PM test/accuracy", ("test/accuracy", "test/accuracy/correctness")),
    ("rl", "RL test/win_rate (PM judge)", ("test/win_rate", "test/greedy_win_rate")),
    ("rl", "RL test/gold_win_rate (gold rule)", ("test/gold_win_rate", "test/greedy_gold_win_rate")),
    ("rl", "RL KL to the SFT policy", ("kl_policy_ref",)),
)
COMBINED_PLOT = "rlhf_curves.png"


@dataclass(frozen=True)
class CurveSummary:
    """One metric's curve in brief (values at the first and last logged steps, and its range)."""

    first: float
    last: float
    min: float
    max: float
    first_step: int
    last_step: int
    points: int

    @classmethod
    def of(cls, curve: Curve) -> CurveSummary:
        steps, values = curve
        if not values:
            raise ValueError("an empty curve has no summary")
        return cls(values[0], values[-1], min(values), max(values), steps[0], steps[-1], len(values))

    @property
    def change(self) -> float:
        return self.last - self.first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_curves(stage_dir: str | os.PathLike[str]) -> dict[str, Curve]:
    """Every numeric curve a stage logged (empty when it has not logged yet)."""
    path = Path(stage_dir) / METRICS_FILE
    return load_curves(path) if path.exists() else {}


def summarize_stage(stage_dir: str | os.PathLike[str], keys: tuple[str, ...]) -> dict[str, CurveSummary]:
    """The summaries of the `keys` a stage logged."""
    curves = stage_curves(stage_dir)
    return {key: CurveSummary.of(curves[key]) for key in keys if key in curves and curves[key][1]}


def summarize_pipeline(log_path: str | os.PathLike[str]) -> dict[str, dict[str, CurveSummary]]:
    """{stage: {metric: summary}} for the headline metrics of every stage under `log_path`."""
    return {stage: summarize_stage(Path(log_path) / stage, HEADLINE_KEYS[stage]) for stage in STAGES}


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else str(value)


def format_summary(
    summaries: dict[str, dict[str, CurveSummary]], wall_s: dict[str, float] | None = None
) -> str:
    """A few lines: per stage, `metric first -> last (min .. max)`, and its wall time if given."""
    lines = []
    for stage in STAGES:
        header = STAGE_TITLES[stage]
        if wall_s is not None and stage in wall_s:
            header += f" ({wall_s[stage]:.0f} s)"
        metrics = summaries.get(stage, {})
        if not metrics:
            lines.append(f"{header}: no evaluations logged")
            continue
        lines.append(f"{header}:")
        for key, s in metrics.items():
            lines.append(
                f"  {key:28s} {_number(s.first)} -> {_number(s.last)}   "
                f"(min {_number(s.min)}, max {_number(s.max)}; steps {s.first_step}..{s.last_step})"
            )
    return "\n".join(lines)


def plot_pipeline_curves(log_path: str | os.PathLike[str], out_name: str = COMBINED_PLOT) -> Path:
    """Draw the headline curves of all stages into `<log_path>/<out_name>` (missing curves are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    log_path = Path(log_path)
    curves = {stage: stage_curves(log_path / stage) for stage in STAGES}
    columns = 3
    rows = math.ceil(len(PLOT_PANELS) / columns)
    fig = Figure(figsize=(4.8 * columns, 3.4 * rows))
    FigureCanvasAgg(fig)
    place_panels(fig, rows, columns)
    fig.suptitle(f"RLHF pipeline: {log_path}")
    for i, (stage, title, keys) in enumerate(PLOT_PANELS, start=1):
        ax = fig.add_subplot(rows, columns, i)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{STAGE_TITLES[stage]} step")
        ax.grid(alpha=0.3)
        drawn = False
        for key in keys:
            if key in curves[stage]:
                steps, values = curves[stage][key]
                ax.plot(steps, values, marker="o", markersize=3, label=key)
                drawn = True
        if drawn:
            ax.legend(fontsize=7)
            if title.endswith("nll"):
                ax.set_yscale("log")  # from ~6 at random init down to a few tenths
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    out = log_path / out_name
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
