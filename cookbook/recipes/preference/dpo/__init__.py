"""Direct preference optimisation: `python -m cookbook.recipes.preference.dpo.train key=value ...`."""
