"""Preference recipes: comparison data sets (hh-rlhf and the bundled stand-in) and DPO."""
