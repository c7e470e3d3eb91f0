"""Command-line keys that a recipe renamed: an old key is refused with its new spelling.

Recipes run as `python -m cookbook.recipes.X key=value ...`; a key the recipe no longer has would
otherwise fail with chz's bare "Extraneous argument". Each recipe keeps one table, old -> new.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import chz

from cookbook.utils.optimizer_config import OptimizerConfig

T = TypeVar("T")

OPTIMIZER_KEYS: dict[str, str] = {name: f"optimizer.{name}" for name in chz.chz_fields(OptimizerConfig)}
"""The optimizer's settings, once top-level keys, now nested under `optimizer.`."""


class RenamedKeyError(ValueError):
    """A command line used a key under its old name."""


def check_renamed_keys(argv: Sequence[str], renamed: Mapping[str, str]) -> None:
    """Raise RenamedKeyError naming the new spelling of every old key among `argv` (`key=value`)."""
    old = [key for key in (arg.split("=", 1)[0] for arg in argv) if key in renamed]
    if old:
        raise RenamedKeyError("renamed: " + "; ".join(f"{key}=... is now {renamed[key]}=..." for key in old))


def recipe_entrypoint(
    main: Callable[[Any], T],
    renamed: Mapping[str, str],
    defaults_for_model: Callable[[str], Mapping[str, Any]] | None = None,
    argv: Sequence[str] | None = None,
) -> T:
    """`chz.nested_entrypoint(main)` that first refuses the keys in `renamed`, with their new names.

    `defaults_for_model(model_name)` gives defaults for the model the command line names
    (`model_name=...`), applied under the command line's own keys.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        check_renamed_keys(args, renamed)
    except RenamedKeyError as e:
        raise SystemExit(f"error: {e}") from None
    if defaults_for_model is None:
        return chz.nested_entrypoint(main, argv=args)
    target = chz.get_nested_target(main)
    model_name = chz.Blueprint(target).apply_from_argv(args).make().model_name
    blueprint = chz.Blueprint(target).apply(defaults_for_model(model_name), layer_name="model defaults")
    return main(blueprint.apply_from_argv(args).make())
