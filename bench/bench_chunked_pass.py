"""The engine's training pass against one padded batch with one graph, on the pipeline's batches.

    python -m bench.bench_chunked_pass            # SFT and preference-model batches of 32, 8 rounds

On a CPU the engine cuts a request's rows, sorted by length, where that least work (padding plus a
cost per chunk, chunks of at most 1536 padded tokens: server_stub.training.batch.length_chunks),
where few positions carry a loss weight it runs the output layer's backward only at those
(server_stub.training.forward_backward, "split at the head"), and rows that begin alike run their
common prefix once (server_stub.training.shared_prefix). The baseline is the same engine with
all three off (`pass_token_budget=None`: one right-padded batch, one graph), measured in the same run,
round by round, on the same model and the same batches: bundled chat answers (the SFT stage) and
bundled comparisons rendered for the preference model, each in both orders as the pipeline batches
them; each side runs forward_backward + optim_step.
The ratios are each side's time / the baseline's.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import common


def _batches(engine: Any, kind: str, count: int, size: int) -> list[list[Any]]:
    """`count` batches of `size` datums as the pipeline's `kind` stage ("sft" or "rm") renders them."""
    from cookbook.client import types
    from cookbook.client.http.tokenizers import tokenizer_from_response
    from cookbook.data import bundled
    from cookbook.preference import ComparisonRendererFromChatRenderer
    from cookbook.recipes.preference.datasets import HHHComparisonBuilder
    from cookbook.renderers import get_renderer
    from cookbook.supervised.data import conversation_to_datum

    renderer = get_renderer("role_colon", tokenizer_from_response(engine.tokenizer(common.BASE_MODEL)))
    rng = random.Random(0)
    if kind == "sft":
        rows = bundled.chat_split("train")[:1000]
        pool: list[types.Datum] = [conversation_to_datum(row["messages"], renderer, None) for row in rows]
    else:
        comparisons, _ = HHHComparisonBuilder(dataset="bundled", test_size=400).get_labeled_comparisons()
        comparison_renderer = ComparisonRendererFromChatRenderer(renderer)
        # As the pipeline batches them: each comparison in both orders, side by side.
        pairs = [
            [comparison_renderer.to_datum(c), comparison_renderer.to_datum(c.swap())]
            for c in comparisons[:1000]
        ]
        return [[d for pair in rng.sample(pairs, size // 2) for d in pair] for _ in range(count)]
    return [rng.sample(pool, size) for _ in range(count)]


SIDES: dict[str, tuple[bool, bool, bool]] = {
    "one batch, one graph": (False, False, False),
    "chunked": (True, False, False),
    "chunked, split at the head": (True, True, False),
    "chunked, split, shared prefixes": (True, True, True),
}
"""Each side: (length-sorted chunks, the output layer's backward only where the loss has a gradient,
rows that begin alike packed around their common prefix)."""


def _timed_pass(
    engine: Any, batches: list[list[Any]], chunked: bool, split: bool, shared: bool
) -> Callable[[], float]:
    from cookbook.client import types
    from server_stub.torch_engine import CPU_PASS_TOKEN_BUDGET
    from server_stub.training import forward_backward

    split_fraction = forward_backward.ACTIVE_FRACTION_TO_SPLIT

    def run() -> float:
        engine.pass_token_budget = CPU_PASS_TOKEN_BUDGET if chunked else None
        engine.share_prefixes = shared
        forward_backward.ACTIVE_FRACTION_TO_SPLIT = split_fraction if split else -1.0
        try:
            start = time.perf_counter()
            for batch in batches:
                engine.forward_backward(
                    "m", types.ForwardBackwardInput(data=batch, loss_fn="cross_entropy"), backward=True
                )
                engine.optim_step("m", types.AdamParams(learning_rate=1e-4))
            return (time.perf_counter() - start) / len(batches) * 1000.0
        finally:
            forward_backward.ACTIVE_FRACTION_TO_SPLIT = split_fraction

    return run


def run(settings: common.BenchSettings) -> common.BenchReport:
    from cookbook.client import types
    from server_stub.torch_engine import CPU_PASS_TOKEN_BUDGET, TorchEngine

    rounds = settings.rounds_or(8)
    count, size = (2, 8) if settings.quick else (6, 32)
    baseline, *others = SIDES
    table = common.Table(
        "training step (forward_backward + optim_step): the engine's pass vs one padded batch, one graph "
        "(in-process engine, CPU)",
        [
            "batches",
            "rows",
            "mean / max length",
            *(f"{side} ms" for side in SIDES),
            *(f"{o} / one" for o in others),
        ],
        note=f"chunks of at most {CPU_PASS_TOKEN_BUDGET} padded tokens; median [range] of "
        f"{rounds} interleaved rounds; < 1 means faster than the baseline",
    )
    data: dict[str, Any] = {"budget": CPU_PASS_TOKEN_BUDGET, "cases": []}
    with tempfile.TemporaryDirectory(prefix="bench-chunks-") as storage:
        engine = TorchEngine(Path(storage), device="cpu")
        engine.create_model("m", common.BASE_MODEL, types.LoraConfig(rank=0), None)
        for kind in ("sft", "rm"):
            batches = _batches(engine, kind, count, size)
            lengths = [d.model_input.length for batch in batches for d in batch]
            sides = {name: _timed_pass(engine, batches, *how) for name, how in SIDES.items()}
            for side in sides.values():  # warm-up
                side()
            times = common.interleaved(rounds, sides)
            spreads = {name: common.Spread.of(times[name]) for name in SIDES}
            ratios = {name: common.ratios(times[name], times[baseline]) for name in others}
            table.add(
                kind,
                size,
                f"{sum(lengths) / len(lengths):.0f} / {max(lengths)}",
                *(spread.text() for spread in spreads.values()),
                *(ratio.text(2) for ratio in ratios.values()),
            )
            data["cases"].append(
                {
                    "kind": kind,
                    "rows": size,
                    "ms": {name: spread.as_dict() for name, spread in spreads.items()},
                    "ratio_to_baseline": {name: ratio.as_dict() for name, ratio in ratios.items()},
                }
            )
    return common.BenchReport("chunked_pass", [table], data)


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_in_process_cli(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
