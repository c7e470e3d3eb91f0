"""The typed errors of the feedback store; the web app turns each into a 4xx with a JSON body."""

from __future__ import annotations


class FeedbackError(ValueError):
    """Something about a feedback request or database is wrong; `status` is the HTTP status the app answers."""

    status: int = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def to_json(self) -> dict[str, str | None]:
        return {"error": str(self), "field": self.field, "type": type(self).__name__}


class NotAFeedbackDatabaseError(FeedbackError):
    """The file is not a SQLite database, or it is one that this store did not create."""

    status = 409


class NewerSchemaError(FeedbackError):
    """The database was written by a newer release whose schema this one cannot read."""

    status = 409


class InvalidFeedbackError(FeedbackError):
    """A request the store refuses: an empty question, a ranking of one answer, a bad rating, ..."""

    status = 422


class UnknownIdError(FeedbackError):
    """A question or answer id that the database does not hold."""

    status = 404
