"""Human feedback: a SQLite store of questions, answers, ratings and rankings; a labelling web app; dataset
builders that train on what was collected (`sft_dataset=feedback.sqlite`, `comparison_dataset=feedback.sqlite`)."""

from cookbook.feedback.errors import (
    FeedbackError,
    InvalidFeedbackError,
    NewerSchemaError,
    NotAFeedbackDatabaseError,
    UnknownIdError,
)
from cookbook.feedback.store import FeedbackStore, NewAnswer, RankedPair, is_feedback_path

__all__ = [
    "FeedbackError",
    "FeedbackStore",
    "InvalidFeedbackError",
    "NewAnswer",
    "NewerSchemaError",
    "NotAFeedbackDatabaseError",
    "RankedPair",
    "UnknownIdError",
    "is_feedback_path",
]
