"""Runnable recipes (`python -m cookbook.recipes.<name> key=value ...`) and the datasets they use."""
