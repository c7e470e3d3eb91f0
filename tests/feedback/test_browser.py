"""The labelling page in headless Chromium against a real training server: ask, compare, rate, correct, export.

Debian's chromium and chromium-driver drive it (.ci/run installs them); Selenium is pointed at both
binaries, so it never downloads a browser or a driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.feedback.answerer import Answerer, SamplingSettings
from cookbook.feedback.app import create_app
from cookbook.feedback.serving import AppThread
from cookbook.feedback.store import FeedbackStore

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 120  # a generous ceiling for the page to reflect a server round trip; never a speed check


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


@pytest.fixture
def app_url(server: LocalServer, tmp_path: Path) -> Iterator[str]:
    service = HttpServiceClient(server.url)
    answerer = Answerer(service, "tiny-llama", settings=SamplingSettings(max_tokens=12))
    with AppThread(create_app(str(tmp_path / "feedback.sqlite"), answerer)) as url:
        yield url
    service.close()


def wait_for_text(driver: WebDriver, selector: str, text: str) -> None:
    WebDriverWait(driver, WAIT_S).until(lambda d: text in d.find_element(By.CSS_SELECTOR, selector).text)


def wait_for_attribute(driver: WebDriver, selector: str, name: str, value: str) -> None:
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, selector).get_attribute(name) == value
    )


def test_label_a_question_in_the_browser(driver: WebDriver, app_url: str, tmp_path: Path) -> None:
    driver.get(app_url + "/")
    wait_for_text(driver, "#counts", "questions 0")

    # ask: Enter in the question box; two answers from the real server appear side by side
    question = driver.find_element(By.ID, "question")
    question.send_keys("What is 3 plus 4?", Keys.ENTER)
    wait_for_text(driver, "#status", "two answers")
    assert driver.find_element(By.ID, "answers").is_displayed()
    ids = [
        int(driver.find_element(By.ID, f"answer-{i}").get_attribute("data-answer-id") or 0) for i in (0, 1)
    ]
    wait_for_text(driver, "#counts", "questions 1 · answers 2")
    driver.save_screenshot(str(tmp_path / "label-asked.png"))

    # pick: the "2" key says B is better
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("2")
    wait_for_text(driver, "#status", "B is better")
    wait_for_attribute(driver, "#counts", "data-rankings", "1")
    assert "chosen" in (driver.find_element(By.ID, "answer-1").get_attribute("class") or "")

    # rate: the "q" key rates A up
    body.send_keys("q")
    wait_for_text(driver, "#status", "A rated up")
    wait_for_attribute(driver, "#counts", "data-ratings", "1")

    # correct: edit A into a better answer and save it
    driver.find_element(By.CSS_SELECTOR, "#answer-0 .edit-open").click()
    editor = driver.find_element(By.CSS_SELECTOR, "#answer-0 .edit textarea")
    editor.clear()
    editor.send_keys("3 plus 4 is 7.")
    driver.find_element(By.CSS_SELECTOR, "#answer-0 .save").click()
    wait_for_text(driver, "#status", "saved correction")
    wait_for_attribute(driver, "#counts", "data-ratings", "2")
    driver.save_screenshot(str(tmp_path / "label-judged.png"))

    # bad input: an empty question gets the API's message on the page, and nothing is written
    question.clear()
    question.send_keys(Keys.ENTER)
    wait_for_text(driver, "#error", "the question is empty")
    driver.save_screenshot(str(tmp_path / "label-error.png"))

    # the data page: counts, recent rows, exports
    driver.get(app_url + "/data")
    wait_for_text(driver, "#count-rankings", "1")
    assert driver.find_element(By.ID, "count-corrections").text == "1"
    assert "3 plus 4 is 7." in driver.find_element(By.ID, "recent-answers").text
    driver.save_screenshot(str(tmp_path / "data.png"))
    exports = {
        name: driver.find_element(By.ID, f"export-{name}").get_attribute("href")
        for name in ("no_robots", "hh_rlhf")
    }
    driver.get(exports["no_robots"] or "")
    sft = [json.loads(line) for line in driver.find_element(By.TAG_NAME, "body").text.splitlines()]
    assert {row["messages"][-1]["content"] for row in sft} >= {"3 plus 4 is 7."}
    driver.get(exports["hh_rlhf"] or "")
    (pair,) = [json.loads(line) for line in driver.find_element(By.TAG_NAME, "body").text.splitlines()]
    assert pair["chosen"].startswith("\n\nHuman: What is 3 plus 4?\n\nAssistant:")

    # the rows in the database
    with FeedbackStore.open(tmp_path / "feedback.sqlite") as store:
        assert store.counts() == {
            "questions": 1,
            "answers": 3,
            "ratings": 2,
            "rankings": 1,
            "ranking_entries": 2,
            "ratings_up": 1,
            "ratings_down": 1,
            "corrections": 1,
        }
        (ranking,) = store.rankings()
        assert ranking["answer_ids"] == [ids[1], ids[0]] and ranking["positions"] == [0, 1]
        ratings = store.rows("ratings")
        assert [(r["answer_id"], r["value"]) for r in reversed(ratings)] == [(ids[0], 1), (ids[0], -1)]
        correction = store.rows("answers", limit=1)[0]
        assert (correction["text"], correction["corrects_answer_id"], correction["source"]) == (
            "3 plus 4 is 7.",
            ids[0],
            "human",
        )
        assert store.rows("answers")[-1]["source"] == "tiny-llama"
    assert all(
        (tmp_path / name).stat().st_size > 0 for name in ("label-asked.png", "label-judged.png", "data.png")
    )
