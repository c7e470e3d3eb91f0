"""The deterministic text the built-in tokenizer is trained on.

The tokenizer must compress what the bundled data and the chat formats will contain (role-colon
chat, Anthropic-HH transcripts, the preference-model markers, small arithmetic, facts, polite and
rude phrasings), so the corpus is generated here from word lists and format strings with a fixed
seed. It lives in the server package because the server must never import the cookbook.
"""

from __future__ import annotations

import random

CORPUS_SEED = 20240601

COUNTRY_CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"),
    ("Brazil", "Brasilia"),
    ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"),
    ("Peru", "Lima"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"),
    ("Russia", "Moscow"),
    ("Poland", "Warsaw"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("Sweden", "Stockholm"),
    ("Norway", "Oslo"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"),
    ("Switzerland", "Bern"),
    ("Australia", "Canberra"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Cuba", "Havana"),
    ("Colombia", "Bogota"),
    ("Morocco", "Rabat"),
    ("South Korea", "Seoul"),
    ("United Kingdom", "London"),
)
COLORS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray")
ANIMALS = (
    "cat",
    "dog",
    "horse",
    "cow",
    "lion",
    "tiger",
    "bear",
    "wolf",
    "fox",
    "rabbit",
    "mouse",
    "bird",
    "fish",
    "duck",
    "goat",
    "sheep",
    "pig",
    "owl",
    "frog",
    "snake",
)
FRUITS = (
    "apple",
    "banana",
    "cherry",
    "grape",
    "lemon",
    "mango",
    "orange",
    "peach",
    "pear",
    "plum",
    "melon",
    "kiwi",
    "lime",
    "berry",
)
COMMON_WORDS = (
    "the",
    "a",
    "an",
    "and",
    "or",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "is",
    "are",
    "was",
    "be",
    "it",
    "this",
    "that",
    "what",
    "which",
    "who",
    "how",
    "why",
    "when",
    "where",
    "can",
    "you",
    "me",
    "my",
    "your",
    "i",
    "we",
    "they",
    "he",
    "she",
    "do",
    "does",
    "not",
    "no",
    "yes",
    "please",
    "tell",
    "give",
    "name",
    "list",
    "write",
    "say",
    "repeat",
    "word",
    "words",
    "times",
    "answer",
    "question",
    "capital",
    "country",
    "color",
    "animal",
    "fruit",
    "number",
    "numbers",
    "opposite",
    "upper",
    "case",
    "uppercase",
    "letters",
    "some",
    "three",
    "four",
    "five",
    "two",
    "one",
    "many",
    "good",
    "bad",
    "help",
    "hello",
    "hi",
    "thanks",
    "great",
    "day",
    "time",
    "tree",
    "house",
    "water",
    "book",
    "sun",
    "moon",
    "car",
    "city",
    "world",
    "people",
    "friend",
    "food",
    "music",
    "idea",
)
ANTONYMS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("up", "down"),
    ("old", "new"),
    ("day", "night"),
    ("light", "dark"),
    ("open", "closed"),
    ("early", "late"),
    ("high", "low"),
    ("hard", "soft"),
    ("full", "empty"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("tall", "short"),
    ("wet", "dry"),
    ("near", "far"),
    ("good", "bad"),
    ("left", "right"),
)
POLITE = ("Sure!", "Of course!", "Happy to help!", "Thank you", "please", "Certainly!", "Great question!")
RUDE = ("Ugh, fine.", "Whatever.", "Obviously,", "As if you didn't know,", "Fine.")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ARITHMETIC = (("plus", lambda a, b: a + b), ("minus", lambda a, b: a - b), ("times", lambda a, b: a * b))
COMPARISON_MARKERS = ("==== Completion A ====", "==== Completion B ====", "==== Preference ====")


def _fact_line(rng: random.Random) -> tuple[str, str]:
    """One question and its answer, drawn from every topic the bundled data covers."""
    topic = rng.randrange(8)
    if topic == 0:
        name, op = ARITHMETIC[rng.randrange(len(ARITHMETIC))]
        a, b = rng.randrange(0, 11), rng.randrange(0, 11)
        verb = rng.choice(("is", "equals"))
        return f"What is {a} {name} {b}?", f"{a} {name} {b} {verb} {op(a, b)}."
    if topic == 1:
        country, capital = COUNTRY_CAPITALS[rng.randrange(len(COUNTRY_CAPITALS))]
        return f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    if topic == 2:
        words = rng.sample(rng.choice((COLORS, ANIMALS, FRUITS)), 3)
        if rng.random() < 0.5:
            return "Name three things.", ", ".join(words) + "."
        return "List three things.", " ".join(f"{i}. {w}" for i, w in enumerate(words, 1))
    if topic == 3:
        word = rng.choice(COMMON_WORDS + ANIMALS + FRUITS)
        return f"Write {word} in uppercase.", word.upper()
    if topic == 4:
        word, n = rng.choice(COLORS + ANIMALS), rng.randrange(2, 6)
        return f"Repeat the word {word} {n} times.", " ".join([word] * n)
    if topic == 5:
        a, b = ANTONYMS[rng.randrange(len(ANTONYMS))]
        if rng.random() < 0.5:
            a, b = b, a
        return f"What is the opposite of {a}?", f"The opposite of {a} is {b}."
    if topic == 6:
        n = rng.randrange(0, 101)
        return f"What number comes after {n}?", f"{n + 1} comes after {n}."
    words = rng.sample(COMMON_WORDS, 6)
    return " ".join(words).capitalize() + "?", " ".join(rng.sample(COMMON_WORDS, 8)) + "."


def _styled(rng: random.Random, answer: str) -> str:
    """Answers in the data vary in style: polite or rude prefixes, sometimes truncated."""
    roll = rng.random()
    if roll < 0.3:
        answer = f"{rng.choice(POLITE)} {answer}"
    elif roll < 0.45:
        answer = f"{rng.choice(RUDE)} {answer}"
    if rng.random() < 0.1:
        answer = answer[: max(1, len(answer) // 2)]
    return answer


def corpus_lines(num_dialogues: int = 1500, seed: int = CORPUS_SEED) -> list[str]:
    """The training corpus as a list of documents; the same arguments always give the same list."""
    rng = random.Random(seed)
    lines: list[str] = [" ".join(str(n) for n in range(101)), " ".join(NUMBER_WORDS), "0 1 2 3 4 5 6 7 8 9"]
    lines += [" ".join(w.upper() for w in words) for words in (COMMON_WORDS, COLORS, ANIMALS, FRUITS)]
    lines += [f"The capital of {c} is {cap}." for c, cap in COUNTRY_CAPITALS]
    for _ in range(num_dialogues):
        question, answer = _fact_line(rng)
        styled = _styled(rng, answer)
        kind = rng.random()
        if kind < 0.35:  # role-colon chat, sometimes with a system message or a greeting turn
            prefix = "System: You are a helpful assistant.\n\n" if rng.random() < 0.15 else ""
            if rng.random() < 0.15:
                prefix += f"User: {rng.choice(('Hello!', 'Hi there.', 'Good day.'))}\n\nAssistant: Hello! How can I help?\n\n"
            lines.append(f"{prefix}User: {question}\n\nAssistant: {styled}\n\nUser:")
        elif kind < 0.65:  # Anthropic-HH transcripts
            lines.append(f"\n\nHuman: {question}\n\nAssistant: {styled}")
        else:  # the pairwise preference-model prompt with its one-token label
            other = _styled(rng, _fact_line(rng)[1] if rng.random() < 0.3 else answer)
            label = rng.choice(("A", "B"))
            lines.append(
                f"User: {question}\n\nSystem: {COMPARISON_MARKERS[0]}\n\nAssistant: {styled}\n\n"
                f"System: {COMPARISON_MARKERS[1]}\n\nAssistant: {other}\n\n"
                f"System: {COMPARISON_MARKERS[2]}\n\nAssistant: {label}"
            )
    return lines
