"""`python -m cookbook.data --out DIR [--seed N]`: write the bundled JSONL files."""

from __future__ import annotations

import argparse

from cookbook.data.bundled import write_bundled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cookbook.data", description=__doc__)
    parser.add_argument("--out", required=True, help="directory to write chat/ and comparisons/ into")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0, the bundled data)")
    args = parser.parse_args(argv)
    for name, path in write_bundled(args.out, seed=args.seed).items():
        with path.open("rb") as f:
            rows = sum(1 for _ in f)
        print(f"{name}: {rows} rows -> {path}")


if __name__ == "__main__":
    main()
