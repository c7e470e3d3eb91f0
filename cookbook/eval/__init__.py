"""Evaluators a training loop runs every `eval_every` steps, and the helper that runs them.

Two kinds, as in Tinker's cookbook: a `TrainingClientEvaluator` scores the live model through
its training client (e.g. `forward` over a test set: cheap, no snapshot); a
`SamplingClientEvaluator` needs generations, so it receives a sampling snapshot of the current
weights. Configs hold *builders* (zero-argument callables, usually small chz classes) so that a
config stays plain data and each run builds its own evaluator objects.
"""

from cookbook.eval.evaluators import (
    Evaluator,
    EvaluatorBuilder,
    Metrics,
    SamplingClientEvaluator,
    SamplingClientEvaluatorBuilder,
    TrainingClientEvaluator,
    TrainingClientEvaluatorBuilder,
)
from cookbook.eval.forward_evaluator import ForwardEvaluator
from cookbook.eval.run import PendingEvaluation, build_evaluators, run_evaluators, submit_evaluators

__all__ = [
    "Evaluator",
    "EvaluatorBuilder",
    "ForwardEvaluator",
    "Metrics",
    "PendingEvaluation",
    "SamplingClientEvaluator",
    "SamplingClientEvaluatorBuilder",
    "TrainingClientEvaluator",
    "TrainingClientEvaluatorBuilder",
    "build_evaluators",
    "run_evaluators",
    "submit_evaluators",
]
