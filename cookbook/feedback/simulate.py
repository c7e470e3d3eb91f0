"""The loop without a person: ask the bundled data's questions through the app's HTTP API and let a
simulated annotator rank and rate the answers (and correct the bad ones), exactly as the page would.

The "gold" annotator is the bundled data's hidden scoring rule (`cookbook.data.gold_judge`): it ranks
the answers by gold score (equal scores tie), rates an answer up when it is correct and not rude, and
corrects the first bad answer of each question into a polite correct one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle, islice

import httpx
from tqdm import tqdm

from cookbook.data import facts, gold_judge
from cookbook.data.tasks import find_task

GOOD_SCORE = gold_judge.CONTENT_POINTS["correct"]  # correct, with no rude or stacked openers
REQUEST_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Judgment:
    """What an annotator says about one question's answers."""

    order: list[list[int]]  # tiers of answer ids, best first
    ratings: list[tuple[int, str, str | None]]  # (answer id, "up" | "down", correction or None)


def gold_annotator(question: str, answers: list[tuple[int, str]]) -> Judgment:
    """Rank by the gold rule's score, rate up the good answers, correct the first bad one."""
    prompt = [{"role": "user", "content": question}]
    scores = {answer_id: gold_judge.score(prompt, text) for answer_id, text in answers}
    order = [
        [answer_id for answer_id, _ in answers if scores[answer_id] == level]
        for level in sorted(set(scores.values()), reverse=True)
    ]
    instance = find_task(question)
    assert instance is not None  # gold_judge.score raised UnknownTaskError otherwise
    ratings: list[tuple[int, str, str | None]] = []
    corrected = False
    for answer_id, _ in answers:
        if scores[answer_id] >= GOOD_SCORE:
            ratings.append((answer_id, "up", None))
        else:
            opener = facts.POLITE_OPENERS[answer_id % len(facts.POLITE_OPENERS)]
            ratings.append((answer_id, "down", None if corrected else f"{opener} {instance.answer}"))
            corrected = True
    return Judgment(order, ratings)


Annotator = Callable[[str, list[tuple[int, str]]], Judgment]
ANNOTATORS: dict[str, Annotator] = {"gold": gold_annotator}


def bundled_questions(n: int) -> list[str]:
    """The last user question of each bundled chat training row, in order, repeated to make `n`."""
    from cookbook.data.bundled import chat_split

    questions = [
        next(m["content"] for m in reversed(row["messages"]) if m["role"] == "user")
        for row in chat_split("train")
    ]
    return list(islice(cycle(questions), n))


async def _label_one(
    client: httpx.AsyncClient, question: str, answers: int, annotator: str, judge: Annotator, seed: int
) -> None:
    asked = await _post(
        client, "/api/questions", {"question": question, "n": answers, "annotator": annotator, "seed": seed}
    )
    pairs = [(answer["id"], answer["text"]) for answer in asked["answers"]]
    judgment = judge(question, pairs)
    if len(pairs) >= 2:
        await _post(client, "/api/rankings", {"order": judgment.order, "annotator": annotator})
    for answer_id, rating, correction in judgment.ratings:
        body = {"answer_id": answer_id, "rating": rating, "annotator": annotator}
        if correction is not None:
            body["correction"] = correction
        await _post(client, "/api/ratings", body)


async def _post(client: httpx.AsyncClient, path: str, body: dict) -> dict:
    response = await client.post(path, json=body)
    if response.status_code >= 400:
        raise RuntimeError(f"POST {path} {body} -> {response.status_code}: {response.text}")
    return response.json()


async def simulate_async(
    app_url: str, annotator: str, n: int, answers: int = 4, concurrency: int = 32, seed: int = 0
) -> None:
    """Label `n` bundled questions through the app at `app_url`, `concurrency` at a time."""
    judge = ANNOTATORS[annotator]
    limit = asyncio.Semaphore(concurrency)
    bar = tqdm(total=n, desc=f"simulate ({annotator})", unit="question")

    async def one(index: int, question: str) -> None:
        async with limit:
            await _label_one(client, question, answers, annotator, judge, seed + index)
            bar.update()

    async with httpx.AsyncClient(base_url=app_url, timeout=REQUEST_TIMEOUT_S) as client:
        await asyncio.gather(*(one(i, q) for i, q in enumerate(bundled_questions(n))))
    bar.close()
