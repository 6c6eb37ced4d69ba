"""
SpellingBee: spelling and letter counting ("How many r are in strawberry?"), the kind of question that a
tokenizer makes hard for a small model. The assistant spells the word, counts by hand, then checks with the
calculator tool ('strawberry'.count('r')) and answers "#### 3". SpellWord is the plain "spell this word" drill.

Words: the web2 lower-case alphabetic list (234,450 words) of the english-words 2.0.2 wheel from PyPI, the same
online and offline. Words are split once by a hash: one word in ten belongs to the test split only, so a model
is never evaluated on a word it was trained on. Examples are generated from (seed, split, index): reproducible.

    from tasks.spellingbee import SpellingBee
    task = SpellingBee("train", size=5000); task[0]
Tests: pytest tests/test_tasks.py -q -k spell
"""

import functools
import io
import logging
import pickle
import random
import string
import zipfile
import zlib

from nanochat.packages import fetch_pypi
from tasks.common import Task, extract_answer

logger = logging.getLogger("nanochat")

ENGLISH_WORDS = ("english-words", "2.0.2")
WORD_LIST = "english_words/data/web2_alpha_lower.pickle"
MIN_LEN, MAX_LEN = 3, 14

QUESTIONS = [
    "How many {l} are in the word {w}?",
    "How many times does the letter {l} appear in {w}?",
    "Count the letter {l} in {w}.",
    "In the word {w}, how many {l} are there?",
    "how many {l}s in {w}",
    "Can you count how many times {l} occurs in {w}?",
    "What is the number of {l} in {w}?",
]
SPELL_QUESTIONS = ["Spell the word {w}.", "How do you spell {w}?", "Spell {w} letter by letter.",
                   "can you spell {w} for me"]
QUOTES = ["'{}'", '"{}"', "{}"]


class _SetOnly(pickle.Unpickler):
    """The word list is a pickled set of str: refuse anything that would import code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the word list")


@functools.cache
def load_words() -> tuple[str, ...]:
    """All usable words, sorted (the order matters for reproducible sampling)."""
    wheel = fetch_pypi(*ENGLISH_WORDS)
    with zipfile.ZipFile(wheel) as z:
        words = _SetOnly(io.BytesIO(z.read(WORD_LIST))).load()
    if not isinstance(words, (set, frozenset, list)):
        raise ValueError(f"{wheel.name}:{WORD_LIST} is not a word list")
    words = sorted(w for w in words if MIN_LEN <= len(w) <= MAX_LEN and w.isascii() and w.isalpha())
    logger.info("SpellingBee: %d words from %s", len(words), wheel.name)
    return tuple(words)


def split_of(word: str) -> str:
    """A fixed train/test assignment by hash: one word in ten is test-only."""
    return "test" if zlib.crc32(word.encode()) % 10 == 0 else "train"


class _WordTask(Task):
    """Generated questions about words of the list: `size` examples, example i drawn from a seed of (seed, split, i)."""

    def __init__(self, split: str, size: int = 1000, seed: int = 42):
        super().__init__(split)
        if split == "validation":
            raise ValueError(f"{self.name} has train and test splits only")
        if size <= 0:
            raise ValueError(f"{self.name}: size must be positive, got {size}")
        self.size, self.seed = size, seed
        self.words = [w for w in load_words() if split_of(w) == split]
        if not self.words:
            raise ValueError(f"{self.name}: no words for the {split} split in the word list")

    def num_examples(self) -> int:
        return self.size

    def _rng(self, index: int) -> random.Random:
        return random.Random(f"{self.name}-{self.seed}-{self.split}-{index}")


class SpellingBee(_WordTask):
    name = "SpellingBee"
    eval_type = "generative"

    def get_example(self, index: int) -> dict:
        rng = self._rng(index)
        word = rng.choice(self.words)
        letter = rng.choice(word) if rng.random() < 0.7 else rng.choice(string.ascii_lowercase)
        quote = rng.choice(QUOTES)
        question = rng.choice(QUESTIONS).format(l=quote.format(letter), w=quote.format(word))
        if rng.random() < 0.3:
            question = question[:1].upper() + question[1:] if rng.random() < 0.5 else question.lower()
        count = word.count(letter)
        positions = [str(i + 1) for i, c in enumerate(word) if c == letter]
        if count == 0:
            found = f"The letter '{letter}' does not appear in it, so I count 0."
        else:
            where = positions[0] if count == 1 else ", ".join(positions[:-1]) + " and " + positions[-1]
            found = f"The letter '{letter}' is at position{'s' if count > 1 else ''} {where}, so I count {count}."
        parts = [
            {"type": "text", "text": f"Let me spell '{word}': {'-'.join(word)}. {found}\n\n"
                                     f"Let me double-check with Python: "},
            {"type": "python", "text": f"'{word}'.count('{letter}')"},
            {"type": "python_output", "text": str(count)},
            {"type": "text", "text": f"\n\nThere {'is' if count == 1 else 'are'} {count} '{letter}' in "
                                     f"'{word}'.\n\n#### {count}"},
        ]
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": parts}],
                "answer": str(count), "word": word, "letter": letter}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return extract_answer(completion) == conversation["answer"]


class SpellWord(_WordTask):
    name = "SpellWord"
    eval_type = "generative"

    def get_example(self, index: int) -> dict:
        rng = self._rng(index)
        word = rng.choice(self.words)
        question = rng.choice(SPELL_QUESTIONS).format(w=rng.choice(QUOTES).format(word))
        return {"messages": [{"role": "user", "content": question},
                             {"role": "assistant", "content": f"{word} is spelled: {'-'.join(word)}"}],
                "answer": "-".join(word), "word": word}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return conversation["answer"] in completion.replace(" ", "").lower()
