"""Reading a free-form answer: which answers its sentences state, and whether it is complete.

A real model does not write the bundled answer format: it says "The sum of 3 and 4 is 7.",
"3 + 4 = 7", "**Paris**", or adds a sentence of explanation. The reading strips markdown, splits
the text into sentences, and finds the sentences that state an answer in one of the task's forms
(`StatementForms`: the value alone, or subject, verb, value). A sentence must be such a statement
as a whole, so a garbled sentence ("3 plus 4 is is 7", "Sure 3 plus 4 is 7") states nothing;
failing that, its comma-separated clauses are read, but only in the subject-verb-value forms
("Its capital is Berlin, a city of ...", "... two and three, which is 6").

  correct:   some sentence states the right answer, none states another one, and the text ends
             with a finished sentence;
  incorrect: some sentence states a wrong answer;
  truncated: only right answers, but the text stops in the middle of a sentence;
  garbage:   no sentence states an answer.
"""

from __future__ import annotations

import re
from functools import cache

from cookbook.data.tasks import Content, StatementForms

_MARKDOWN_RE = re.compile(r"\*\*|__|`|^#+ +|^\s*(?:[-*+]|\d+[.)]) +", re.MULTILINE)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_FINAL_PUNCTUATION = ".!?"
_CLOSING = "\"')]}”’ "
_LEAD = r"(?i:(?:(?:so|therefore|thus|hence|and|yes),? )?(?:we (?:have|get) )?)"
_VERB = r"(?i: ?(?:=|is equal to|is simply|is just|equals|is|makes|gives|would be|you get|:) ?)"
_ANSWER_IS = r"(?i:(?:the|my) (?:final |correct )?answer is:? ?)"
_WHICH_IS = (
    r"(?i:(?:which|that) (?:is|makes|gives|equals) |(?:but )?(?:it's|it is) (?:actually |just |simply )?)"
)
_CLAUSE_RE = re.compile(r", (?=[A-Za-z])")


def plain_text(answer: str) -> str:
    """`answer` without markdown emphasis, code marks, headings and list bullets."""
    return _MARKDOWN_RE.sub("", answer).strip()


def sentences(text: str) -> list[str]:
    """The sentences of `text` (split after . ! ? and at line breaks), each without its final
    punctuation."""
    pieces = (piece.strip().rstrip(_FINAL_PUNCTUATION).strip() for piece in _SENTENCE_END_RE.split(text))
    return [piece for piece in pieces if piece]


@cache
def _statement_re(subjects: tuple[str, ...], value: str, alone: bool) -> re.Pattern[str]:
    subject = "|".join(f"(?i:{s})" for s in subjects)
    forms = [
        rf"(?:{subject}){_VERB}(?P<stated>{value})",
        rf"{_ANSWER_IS}(?P<answered>{value})",
        rf"{_WHICH_IS}(?P<which>{value})",
        rf"(?P<first>{value}) (?i:is) (?:{subject})",
    ]
    if alone:
        forms.append(rf"(?P<alone>{value})")
    return re.compile(_LEAD + "(?:" + "|".join(forms) + ")")


def _match_value(forms: StatementForms, text: str, alone: bool) -> str | None:
    m = _statement_re(forms.subjects, forms.value, alone).fullmatch(text)
    if m is None:
        return None
    return forms.normalise(next(group for group in m.groups() if group is not None))


def stated_answer(forms: StatementForms, sentence: str) -> str | None:
    """The answer `sentence` states (as a whole, else in its first stating clause), normalised;
    None if it states none."""
    whole = _match_value(forms, sentence, alone=True)
    if whole is not None:
        return whole
    clauses = _CLAUSE_RE.split(sentence)
    if len(clauses) == 1:
        return None
    return next((a for a in (_match_value(forms, c, alone=False) for c in clauses) if a is not None), None)


def ends_finished(text: str) -> bool:
    """Whether `text` ends with a finished sentence (final punctuation, maybe inside closing quotes)."""
    return text.rstrip(_CLOSING).endswith(tuple(_FINAL_PUNCTUATION))


def read(forms: StatementForms, answer: str) -> Content:
    """Grade an answer (openers already removed) by the answers its sentences state."""
    text = plain_text(answer)
    parts = sentences(text)
    stated = [a for a in (stated_answer(forms, s) for s in parts) if a is not None]
    if not stated:
        return "garbage"
    if any(a != forms.expected for a in stated):
        return "incorrect"
    last_is_statement = stated_answer(forms, parts[-1]) is not None
    return "correct" if ends_finished(text) or last_is_statement else "truncated"
