"""`python -m cookbook.feedback serve|simulate|export ...`: label answers in a browser, simulate a labeller, export.

    python -m cookbook.feedback serve --db feedback.sqlite --model tiny-llama          # http://127.0.0.1:8765
    python -m cookbook.feedback serve --db feedback.sqlite --model tinker://<run>/sampler_weights/final \\
        --base-url http://gpu-box:8000
    python -m cookbook.feedback simulate --db feedback.sqlite --annotator gold --n 2000
    python -m cookbook.feedback export --db feedback.sqlite --schema hh_rlhf --out pairs.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cookbook.feedback.answerer import Answerer, SamplingSettings
from cookbook.feedback.errors import FeedbackError
from cookbook.feedback.simulate import ANNOTATORS, simulate_async
from cookbook.feedback.store import FeedbackStore
from cookbook.model_config import BUILTIN_MODEL_NAME

DEFAULT_PORT = 8765


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="the feedback database (created if missing)")
    parser.add_argument("--model", default=BUILTIN_MODEL_NAME, help="a base model or a tinker:// checkpoint")
    parser.add_argument(
        "--base-url", default=None, help="the training server (default: start the bundled one)"
    )
    parser.add_argument("--renderer", default=None, help="chat format (default: the model's recommended one)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=64)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cookbook.feedback", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="the labelling web app")
    _model_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    simulate = commands.add_parser("simulate", help="label the bundled questions with a simulated annotator")
    _model_arguments(simulate)
    simulate.add_argument("--annotator", choices=sorted(ANNOTATORS), default="gold")
    simulate.add_argument("--n", type=int, default=2000, help="questions to ask")
    simulate.add_argument("--answers", type=int, default=4, help="answers per question (ranked together)")
    simulate.add_argument("--concurrency", type=int, default=32)
    simulate.add_argument("--seed", type=int, default=0)
    export = commands.add_parser("export", help="write the database as JSONL")
    export.add_argument("--db", required=True)
    export.add_argument("--schema", choices=("no_robots", "hh_rlhf"), required=True)
    export.add_argument("--out", required=True)
    return parser


def _answerer(args: argparse.Namespace) -> Answerer:
    from cookbook.client.connection import connect

    settings = SamplingSettings(temperature=args.temperature, max_tokens=args.max_tokens)
    return Answerer(connect(args.base_url), args.model, args.renderer, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with FeedbackStore.open(args.db, create=args.command != "export") as store:
            if args.command == "export":
                print(f"wrote {store.export_jsonl(args.out, args.schema)} rows to {args.out}")
                return 0
    except (FeedbackError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from cookbook.feedback.app import create_app

    app = create_app(args.db, _answerer(args))
    if args.command == "serve":
        import uvicorn

        print(f"labelling page: http://{args.host}:{args.port}/  (data: /data)")
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    from cookbook.feedback.serving import AppThread

    with AppThread(app) as url:
        asyncio.run(simulate_async(url, args.annotator, args.n, args.answers, args.concurrency, args.seed))
    with FeedbackStore.open(args.db) as store:
        print(f"{args.db}: {store.counts()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
