"""
Arithmetic word problems with calculator tool calls: generated, seeded stand-in for GSM8K training data
(which no registry package carries) and the reward source for RL. Solutions are written like GSM8K's, with
calculator steps <<3*12=36>> that become python / python_output parts, and end with "#### N".

Train and test never share a question: a question belongs to the test split when the CRC32 of its text is 0 mod
10, else to train (the parameter ranges are small, so separate random streams alone would repeat ~8% of test
questions in a 20k training set). Test is the evaluated split.

    from tasks.arithmetic import ArithmeticProblems
    task = ArithmeticProblems("train", size=10000); task[0]
Tests: pytest tests/test_tasks.py -q -k arithmetic
"""

import random
import zlib

from tasks.common import Task, extract_answer, tool_parts

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kofi", "Lena", "Mia", "Noah"]
ITEMS = ["apples", "stickers", "marbles", "pencils", "cookies", "cards", "stamps", "shells"]


def _packs(rng):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 12), rng.randint(3, 25)
    c = rng.randint(1, a * b - 1)
    q = f"{n} buys {a} packs of {item} with {b} {item} in each pack, then gives away {c}. How many {item} " \
        f"does {n} have left?"
    s = f"{n} buys {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {item}.\nAfter giving away {c}, {n} has " \
        f"{a * b} - {c} = <<{a * b}-{c}={a * b - c}>>{a * b - c} {item} left."
    return q, s, a * b - c


def _wages(rng):
    n = rng.choice(NAMES)
    a, b, c = rng.randint(8, 40), rng.randint(2, 10), rng.randint(2, 7)
    q = f"{n} earns ${a} an hour and works {b} hours a day. How much does {n} earn in {c} days?"
    s = f"In one day {n} earns {a} * {b} = $<<{a}*{b}={a * b}>>{a * b}.\nIn {c} days that is " \
        f"{a * b} * {c} = $<<{a * b}*{c}={a * b * c}>>{a * b * c}."
    return q, s, a * b * c


def _shopping(rng):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    b, c = rng.randint(2, 9), rng.randint(2, 15)
    a = b * c + rng.randint(1, 60)
    q = f"{n} has ${a} and buys {b} bags of {item} at ${c} per bag. How many dollars does {n} have left?"
    s = f"The bags cost {b} * {c} = $<<{b}*{c}={b * c}>>{b * c}.\n{n} has {a} - {b * c} = " \
        f"$<<{a}-{b * c}={a - b * c}>>{a - b * c} left."
    return q, s, a - b * c


def _farm(rng):
    a, b, c = rng.randint(5, 90), rng.randint(5, 90), rng.randint(5, 200)
    q = f"A farm has {a} cows, {b} sheep and {c} chickens. How many animals live on the farm?"
    s = f"Cows and sheep make {a} + {b} = <<{a}+{b}={a + b}>>{a + b} animals.\nWith the chickens there are " \
        f"{a + b} + {c} = <<{a + b}+{c}={a + b + c}>>{a + b + c} animals."
    return q, s, a + b + c


def _reading(rng):
    n = rng.choice(NAMES)
    a, b, c = rng.randint(5, 40), rng.randint(2, 14), rng.randint(1, 60)
    q = f"{n} reads {a} pages every day for {b} days and then {c} more pages on the last evening. " \
        f"How many pages did {n} read in total?"
    s = f"Over {b} days {n} reads {a} * {b} = <<{a}*{b}={a * b}>>{a * b} pages.\nAdding the last evening: " \
        f"{a * b} + {c} = <<{a * b}+{c}={a * b + c}>>{a * b + c} pages."
    return q, s, a * b + c


def _temperature(rng):
    a, b, c = rng.randint(-5, 20), rng.randint(2, 15), rng.randint(1, 25)
    q = f"The temperature at dawn was {a} degrees. By noon it rose {b} degrees, and by midnight it fell " \
        f"{c} degrees from the noon value. What was the temperature at midnight?"
    s = f"At noon it was {a} + {b} = <<{a}+{b}={a + b}>>{a + b} degrees.\nAt midnight it was {a + b} - {c} = " \
        f"<<{a + b}-{c}={a + b - c}>>{a + b - c} degrees."
    return q, s, a + b - c


TEMPLATES = [_packs, _wages, _shopping, _farm, _reading, _temperature]


def split_of(question: str) -> str:
    """A fixed train/test assignment by hash of the question text: one question in ten is test-only."""
    return "test" if zlib.crc32(question.encode()) % 10 == 0 else "train"


class ArithmeticProblems(Task):
    name = "Arithmetic"
    eval_type = "generative"

    def __init__(self, split: str, size: int = 1000, seed: int = 42):
        super().__init__(split)
        if split == "validation":
            raise ValueError("Arithmetic has train and test splits only")
        if size <= 0:
            raise ValueError(f"Arithmetic: size must be positive, got {size}")
        self.size, self.seed = size, seed

    def num_examples(self) -> int:
        return self.size

    def get_example(self, index: int) -> dict:
        rng = random.Random(f"arith-{self.seed}-{self.split}-{index}")
        while True:  # draw until the question falls in this split (about 10 draws for test, 1.1 for train)
            question, solution, answer = rng.choice(TEMPLATES)(rng)
            if split_of(question) == self.split:
                break
        solution += f"\n#### {answer}"
        return {"messages": [{"role": "user", "content": question},
                             {"role": "assistant", "content": tool_parts(solution)}],
                "answer": str(answer)}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return extract_answer(completion) == conversation["answer"]
