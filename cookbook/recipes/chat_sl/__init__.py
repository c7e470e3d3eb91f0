"""Supervised fine-tuning on chat data (NoRobots, or the bundled generated conversations)."""
