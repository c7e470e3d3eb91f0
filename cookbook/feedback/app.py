"""The labelling web app: two pages and the JSON API they (and `simulate`) use.

    GET  /                    ask a question, compare two answers, rate, correct (static/label.html)
    GET  /data                counts, recent rows, export links (static/data.html)
    POST /api/questions       {question, n, annotator} -> the question id and n sampled answers
    POST /api/rankings        {order: [[best ids], [next ids], ...], annotator} -> ranking id
    POST /api/ratings         {answer_id, rating: up|down, correction?, annotator} -> rating id
    GET  /api/stats           counts and the most recent rows
    GET  /api/export/{no_robots|hh_rlhf}.jsonl

Every refusal is a 4xx with a JSON body {"error", "field", "type"}; a request is validated in full
before anything is written, and each write is one store transaction, so nothing is half-written.
"""

from __future__ import annotations

import asyncio
import io
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from cookbook.feedback.answerer import AnswerSource
from cookbook.feedback.errors import FeedbackError, InvalidFeedbackError
from cookbook.feedback.store import FeedbackStore, question_messages

MAX_ANSWERS_PER_QUESTION = 8
RECENT_ROWS = 20
EXPORT_SCHEMAS = ("no_robots", "hh_rlhf")


class AskRequest(BaseModel):
    question: str
    n: int = Field(2, ge=1, le=MAX_ANSWERS_PER_QUESTION)
    annotator: str = "anonymous"
    seed: int | None = None


class RankRequest(BaseModel):
    order: list[list[int]]
    annotator: str = "anonymous"


class RateRequest(BaseModel):
    answer_id: int
    rating: Literal["up", "down"]
    correction: str | None = None
    annotator: str = "anonymous"


def _page(name: str) -> str:
    return resources.files("cookbook.feedback").joinpath("static", name).read_text(encoding="utf-8")


def create_app(db_path: str, answerer: AnswerSource | None) -> FastAPI:
    """The app over the database at `db_path`; `answerer` samples answers (None: asking is refused).

    A database that is not ours does not stop the app: every API call then answers 409 with the
    reason, and the pages show it.
    """
    app = FastAPI(title="cookbook feedback")
    try:
        store: FeedbackStore | None = FeedbackStore.open(db_path)
        open_error: FeedbackError | None = None
    except FeedbackError as exc:
        store, open_error = None, exc
    app.state.store = store

    def the_store() -> FeedbackStore:
        if store is None:
            assert open_error is not None
            raise open_error
        return store

    @app.exception_handler(FeedbackError)
    async def feedback_error(_: Request, exc: FeedbackError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        message = f"{field}: {first['msg']}" if field else str(first["msg"])
        return JSONResponse({"error": message, "field": field, "type": "ValidationError"}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    def label_page() -> str:
        return _page("label.html")

    @app.get("/data", response_class=HTMLResponse)
    def data_page() -> str:
        return _page("data.html")

    @app.post("/api/questions")
    async def ask(body: AskRequest) -> dict[str, Any]:
        messages = question_messages(body.question)
        if not body.annotator.strip():
            raise InvalidFeedbackError("the annotator's name is empty", "annotator")
        active = the_store()
        if answerer is None:
            raise InvalidFeedbackError("this app was started without a model to answer", "question")
        answers = await answerer.answer_async(messages, body.n, body.seed)
        question_id, answer_ids = await asyncio.to_thread(
            active.add_question, messages, answers, body.annotator
        )
        return {
            "question_id": question_id,
            "question": messages[-1]["content"],
            "answers": [
                {"id": answer_id, "text": answer.text, "source": answer.source}
                for answer_id, answer in zip(answer_ids, answers, strict=True)
            ],
        }

    @app.post("/api/rankings")
    async def rank(body: RankRequest) -> dict[str, int]:
        ranking_id = await asyncio.to_thread(the_store().rank, body.order, body.annotator)
        return {"ranking_id": ranking_id}

    @app.post("/api/ratings")
    async def rate(body: RateRequest) -> dict[str, int | None]:
        rating_id, corrected_id = await asyncio.to_thread(
            the_store().rate, body.answer_id, body.rating, body.annotator, body.correction
        )
        return {"rating_id": rating_id, "corrected_answer_id": corrected_id}

    @app.get("/api/stats")
    async def stats() -> dict[str, Any]:
        active = the_store()

        def read() -> dict[str, Any]:
            return {
                "db": str(active.path),
                "model": None if answerer is None else answerer.model,
                "counts": active.counts(),
                "exports": {schema: len(active.export_rows(schema)) for schema in EXPORT_SCHEMAS},  # type: ignore[arg-type]
                "recent": {
                    table: active.rows(table, RECENT_ROWS)
                    for table in ("questions", "answers", "ratings", "rankings")
                },
            }

        return await asyncio.to_thread(read)

    @app.get("/api/export/{name}")
    async def export(name: str) -> PlainTextResponse:
        schema = name.removesuffix(".jsonl")
        if schema not in EXPORT_SCHEMAS:
            raise InvalidFeedbackError(f"unknown export {name!r}: {' or '.join(EXPORT_SCHEMAS)}", "schema")
        buffer = io.StringIO()
        await asyncio.to_thread(the_store().export_jsonl, buffer, schema)  # type: ignore[arg-type]
        return PlainTextResponse(buffer.getvalue(), media_type="text/plain; charset=utf-8")

    return app
