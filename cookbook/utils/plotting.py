"""A picture of a run's main curves, drawn from its metrics.jsonl at the end of training.

Plotting is a courtesy, never a reason for a run to fail: keys that were not logged are left
out, unreadable lines are skipped, and a run with nothing to plot gets a figure that says so.
Drawing uses matplotlib's Agg canvas directly (no pyplot), so it works headless and does not
touch the backend or global figure state of a program that imports it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cookbook.utils.jsonl import read_jsonl
from cookbook.utils.metric_display import HEADLINE_METRICS, is_number
from cookbook.utils.ml_log import METRICS_FILE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

DEFAULT_PLOT_KEYS: tuple[str, ...] = HEADLINE_METRICS
FALLBACK_LIMIT = 6
COLUMNS = 3
MARKER_MAX_POINTS = 40
MARGINS_IN = {"left": 0.7, "right": 0.25, "bottom": 0.55, "top": 0.8, "row_gap": 0.8, "column_gap": 0.7}
"""Fixed figure margins and gaps between panels, in inches (room for titles, tick and axis labels)."""

Curve = tuple[list[int], list[float]]


def load_curves(metrics_path: str | os.PathLike[str]) -> dict[str, Curve]:
    """Every numeric metric as (steps, values), sorted by step.

    When a step was logged twice (a resumed run replays the steps after its last checkpoint)
    the later value wins; non-finite values are dropped.
    """
    by_key: dict[str, dict[int, float]] = {}
    for row in read_jsonl(metrics_path, skip_invalid=True):
        if not isinstance(row, dict) or not is_number(row.get("step")):
            continue
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and is_number(value) and math.isfinite(value):
                by_key.setdefault(key, {})[step] = float(value)
    return {key: (sorted(points), [points[s] for s in sorted(points)]) for key, points in by_key.items()}


def choose_keys(curves: dict[str, Curve], keys: Sequence[str] | None) -> list[str]:
    """The requested (or default) keys that were logged; with no defaults logged, a few of the rest."""
    wanted = list(DEFAULT_PLOT_KEYS if keys is None else keys)
    present = [k for k in wanted if k in curves]
    missing = [k for k in wanted if k not in curves]
    if keys is not None and missing:
        logger.warning("not plotting metrics that were never logged: %s", ", ".join(missing))
    if keys is None and not present:
        present = [k for k in curves if not k.startswith("time/")][:FALLBACK_LIMIT]
    return present


def place_panels(fig: Figure, rows: int, columns: int) -> None:
    """Lay `fig`'s grid of panels out with `MARGINS_IN`. Why not a layout engine: it measures every tick
    label of every panel, which took half of each plot's time (0.3-0.7 s at the end of a stage)."""
    width, height = fig.get_size_inches()
    m = MARGINS_IN
    panel_width = (width - m["left"] - m["right"] - (columns - 1) * m["column_gap"]) / columns
    panel_height = (height - m["bottom"] - m["top"] - (rows - 1) * m["row_gap"]) / rows
    fig.subplots_adjust(
        left=m["left"] / width,
        right=1 - m["right"] / width,
        bottom=m["bottom"] / height,
        top=1 - m["top"] / height,
        wspace=m["column_gap"] / panel_width,
        hspace=m["row_gap"] / panel_height,
    )


def plot_metrics(
    log_dir: str | os.PathLike[str], keys: Sequence[str] | None = None, out_name: str = "metrics.png"
) -> Path:
    """Draw one subplot per metric (x = step) into `<log_dir>/<out_name>` and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    log_dir = Path(log_dir)
    out_path = log_dir / out_name
    curves = load_curves(log_dir / METRICS_FILE)
    chosen = choose_keys(curves, keys)

    n = max(1, len(chosen))
    ncols = min(n, COLUMNS)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows))
    FigureCanvasAgg(fig)
    place_panels(fig, nrows, ncols)
    fig.suptitle(log_dir.name or str(log_dir))
    if not chosen:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, f"no metrics to plot in {METRICS_FILE}", ha="center", va="center")
        logger.warning("%s: no metrics to plot", log_dir / METRICS_FILE)
    for i, key in enumerate(chosen, start=1):
        steps, values = curves[key]
        ax = fig.add_subplot(nrows, ncols, i)
        ax.plot(steps, values, marker="o" if len(steps) <= MARKER_MAX_POINTS else None, markersize=3)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path
