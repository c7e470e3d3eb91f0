"""Utilities every training loop shares: logging, progress, plots, checkpoints, schedules, run dirs.

Import the submodules directly (`from cookbook.utils.ml_log import setup_logging`); this package
imports nothing so that a loop only pays for what it uses (matplotlib is loaded only to plot).
"""
