"""
Arithmetic word problems with calculator tool calls: generated, seeded stand-in for GSM8K training data
(which no registry package carries) and the reward source for RL. Solutions are written like GSM8K's, with
calculator steps <<3*12=36>> that become python / python_output parts, and end with "#### N". Thirteen
templates: six two-step ones, and seven with three or four steps, an irrelevant number, a division, or an order
that runs backwards from the question's. `scale` widens the range of the given numbers (scale 3: up to three times
larger than mid-training and SFT see): a depth-4 SFT model solves those only sometimes, which is where RL has room.

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
    c = rng.randrange(1, a * b)
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


# Harder problems: three or four steps, an irrelevant number, division, or an order that is not the question's.
# A depth-4 model after SFT gets the two-step templates above right almost always; these leave RL room to learn.

def _sharing(rng):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    kids, each = rng.randint(2, 6), rng.randint(2, 12)
    a, b = rng.randint(2, 9), rng.randint(3, 20)
    while a * b <= kids * each:
        a, b = a + 1, b + 2
    c = a * b - kids * each
    q = f"{n} has {a} boxes of {item} with {b} in each box. {n} keeps {c} and shares the rest equally among " \
        f"{kids} friends. How many {item} does each friend get?"
    s = f"{n} has {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {item}.\nAfter keeping {c}, {a * b} - {c} = " \
        f"<<{a * b}-{c}={kids * each}>>{kids * each} are shared.\nEach friend gets {kids * each} / {kids} = " \
        f"<<{kids * each}/{kids}={each}>>{each} {item}."
    return q, s, each


def _change(rng):
    n = rng.choice(NAMES)
    x, p, y, r = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 6), rng.randint(1, 7)
    cost = x * p + y * r
    bill = next(v for v in (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if v > cost)
    q = f"{n} buys {x} notebooks at ${p} each and {y} pens at ${r} each, and pays with a ${bill} bill. " \
        f"How much change does {n} get?"
    s = f"The notebooks cost {x} * {p} = $<<{x}*{p}={x * p}>>{x * p}.\nThe pens cost {y} * {r} = " \
        f"$<<{y}*{r}={y * r}>>{y * r}.\nTogether that is {x * p} + {y * r} = $<<{x * p}+{y * r}={cost}>>{cost}.\n" \
        f"The change is {bill} - {cost} = $<<{bill}-{cost}={bill - cost}>>{bill - cost}."
    return q, s, bill - cost


def _trip(rng):
    a, b, c, d = rng.randint(30, 90), rng.randint(2, 5), rng.randint(10, 60), rng.randint(2, 6)
    q = f"A bus drives at {a} km per hour for {b} hours, then at {c} km per hour for {d} hours. " \
        f"How many km does it drive in all?"
    s = f"First it drives {a} * {b} = <<{a}*{b}={a * b}>>{a * b} km.\nThen {c} * {d} = <<{c}*{d}={c * d}>>{c * d} " \
        f"km.\nIn all {a * b} + {c * d} = <<{a * b}+{c * d}={a * b + c * d}>>{a * b + c * d} km."
    return q, s, a * b + c * d


def _distractor(rng):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    age, a, b, c = rng.randint(6, 14), rng.randint(2, 9), rng.randint(3, 15), rng.randint(2, 40)
    q = f"{n} is {age} years old and has {a} bags of {item} with {b} {item} in each bag. {n}'s brother has " \
        f"{c} {item}. How many {item} do they have together?"
    s = f"{n} has {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {item}.\nTogether they have {a * b} + {c} = " \
        f"<<{a * b}+{c}={a * b + c}>>{a * b + c} {item}."
    return q, s, a * b + c


def _before(rng):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    start, c, d = rng.randint(10, 80), rng.randint(2, 30), rng.randint(2, 30)
    while d > start + c:
        d //= 2
    end = start + c - d
    q = f"{n} bought {c} {item} and then gave {d} to a friend. Now {n} has {end} {item}. How many {item} did " \
        f"{n} have at first?"
    s = f"Before giving {d} away, {n} had {end} + {d} = <<{end}+{d}={end + d}>>{end + d} {item}.\nBefore buying " \
        f"{c}, {n} had {end + d} - {c} = <<{end + d}-{c}={start}>>{start} {item}."
    return q, s, start


def _half(rng):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = 2 * rng.randint(5, 50), rng.randint(2, 30)
    q = f"{n} had {a} {item} and gave half of them to a cousin. Then {n} found {b} more. How many {item} does " \
        f"{n} have now?"
    s = f"Half of {a} is {a} / 2 = <<{a}/2={a // 2}>>{a // 2}, so {n} kept {a // 2}.\nAfter finding {b} more: " \
        f"{a // 2} + {b} = <<{a // 2}+{b}={a // 2 + b}>>{a // 2 + b} {item}."
    return q, s, a // 2 + b


def _savings(rng):
    n = rng.choice(NAMES)
    a, b, c = rng.randint(3, 20), rng.randint(2, 10), rng.randint(5, 50)
    d = rng.randrange(5, a * b + c)
    q = f"{n} already has ${c} and saves ${a} every week for {b} weeks. Then {n} buys a game for ${d}. " \
        f"How many dollars does {n} have left?"
    s = f"{n} saves {a} * {b} = $<<{a}*{b}={a * b}>>{a * b}.\nWith what {n} had: {a * b} + {c} = " \
        f"$<<{a * b}+{c}={a * b + c}>>{a * b + c}.\nAfter the game: {a * b + c} - {d} = " \
        f"$<<{a * b + c}-{d}={a * b + c - d}>>{a * b + c - d}."
    return q, s, a * b + c - d


class ScaledDraws(random.Random):
    """A random stream whose randint draws a problem's given numbers from ranges `scale` times wider (upper bound x
    scale). The templates draw numbers that must stay below others (what is given away, what is spent) with
    randrange, which this leaves exact; at scale 1 the draws are random.Random's."""

    def __init__(self, seed: str, scale: float):
        super().__init__(seed)
        self.scale = scale

    def randint(self, a: int, b: int) -> int:
        return super().randint(a, max(a, round(b * self.scale)))


LARGE_NUMBERS_SCALE = 3     # chat_rl's training problems and chat_eval's Arithmetic-x3

TEMPLATES = [_packs, _wages, _shopping, _farm, _reading, _temperature,
             _sharing, _change, _trip, _distractor, _before, _half, _savings]


def split_of(question: str) -> str:
    """A fixed train/test assignment by hash of the question text: one question in ten is test-only."""
    return "test" if zlib.crc32(question.encode()) % 10 == 0 else "train"


class ArithmeticProblems(Task):
    name = "Arithmetic"
    eval_type = "generative"

    def __init__(self, split: str, size: int = 1000, seed: int = 42, scale: float = 1):
        super().__init__(split)
        if split == "validation":
            raise ValueError("Arithmetic has train and test splits only")
        if size <= 0:
            raise ValueError(f"Arithmetic: size must be positive, got {size}")
        if scale < 1:
            raise ValueError(f"Arithmetic: scale must be at least 1, got {scale}")
        self.size, self.seed, self.scale = size, seed, scale
        if scale != 1:      # larger numbers than mid/SFT train on: a task of its own in every report
            self.name = f"Arithmetic-x{scale:g}"

    def num_examples(self) -> int:
        return self.size

    def get_example(self, index: int) -> dict:
        rng = ScaledDraws(f"arith-{self.seed}-{self.split}-{index}", self.scale)
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
