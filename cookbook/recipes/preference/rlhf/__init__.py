"""The 3-stage RLHF pipeline (SFT -> preference model -> RL):
`python -m cookbook.recipes.preference.rlhf.rlhf_pipeline key=value ...`."""
