"""
mid_train and chat_sft end to end on a tiny model: a resumed run equals an uninterrupted one (weights and loader
position), no training mixture holds a split that chat_eval scores, bad flags give one-line errors.

    pytest tests/test_finetune.py -q
"""

from dataclasses import asdict

import pytest
import torch

from conftest import tiny_gpt
from nanochat import chat_eval, report
from nanochat.checkpoint_manager import load_checkpoint, save_checkpoint
from scripts import chat_rl, chat_sft, mid_train
from tasks.common import Task, TaskMixture

SEQ_LEN = 64


class Sums(Task):
    """Short generated chats ('3+4?' -> '7') that fit a 64-token context in bytes."""
    name = "Sums"
    eval_split = None

    def __init__(self, n: int, offset: int = 0):
        super().__init__("train")
        self.n, self.offset = n, offset

    def num_examples(self):
        return self.n

    def get_example(self, i):
        a, b = (i + self.offset) % 17, (3 * i + self.offset) % 11
        return {"messages": [{"role": "user", "content": f"{a}+{b}?"}, {"role": "assistant", "content": str(a + b)}]}


@pytest.fixture
def tiny_stages(base_dir, byte_tok, monkeypatch):
    """A tiny base checkpoint, and both stages' mixtures replaced by small hand-made ones (no downloads)."""
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=SEQ_LEN, perturb=0.1)
    save_checkpoint(str(base_dir / "base" / "base_checkpoints" / "d1"), 5, model.state_dict(), None,
                    {"step": 5, "model_config": asdict(model.config)})
    mixtures = lambda scale, seed: (TaskMixture([Sums(90)], seed=seed), TaskMixture([Sums(12, offset=500)]))
    monkeypatch.setattr(mid_train, "mixtures", mixtures)
    monkeypatch.setattr(chat_sft, "mixtures", mixtures)
    torch.set_num_threads(1)
    return base_dir / "base"


COMMON = ["--device-batch-size", "2", "--eval-tokens", "256", "--compile", "off", "--device-type", "cpu"]
STAGES = [(mid_train, "mid_checkpoints", ["--total-batch-size", str(4 * SEQ_LEN)]),
          (chat_sft, "chatsft_checkpoints", ["--examples-per-step", "4", "--chat-eval-every", "-1", "--source", "base"])]


@pytest.mark.parametrize("script,folder,flags", STAGES, ids=["mid_train", "chat_sft"])
def test_resume_equals_uninterrupted_run(tiny_stages, script, folder, flags):
    argv = COMMON + flags + ["--num-iterations", "6"]
    straight = script.main(argv + ["--save-every", "3"])         # saves step 3 on the way, then step 6
    directory = str(tiny_stages / folder / "d1")
    weights, _, meta = load_checkpoint(directory, 6, "cpu")
    assert straight["step"] == 6 and meta["loop_state"]["step"] == 6 and meta["start"]["step"] == 5

    resumed = script.main(argv + ["--resume", "3"])              # steps 4..6 again, from the step-3 checkpoint
    assert resumed["step"] == 6 and resumed["loader_state"] == straight["loader_state"]
    assert resumed["losses"] == pytest.approx(straight["losses"][3:], abs=1e-6)
    again, _, _ = load_checkpoint(directory, 6, "cpu")
    for name, tensor in weights.items():
        assert torch.allclose(tensor, again[name], atol=1e-6), name
    # and the stage really trained: the weights moved away from the base model's
    base, _, _ = load_checkpoint(str(tiny_stages / "base_checkpoints" / "d1"), 5, "cpu")
    assert not torch.allclose(base["lm_head.weight"], weights["lm_head.weight"])


def test_sft_starts_from_mid_and_runs_chat_eval(tiny_stages, monkeypatch, capsys):
    mid_train.main(COMMON + ["--total-batch-size", str(4 * SEQ_LEN), "--num-iterations", "2"])
    quiz = Sums(6, offset=900)
    quiz.evaluate = lambda conversation, reply: reply.strip() == conversation["messages"][1]["content"]
    monkeypatch.setattr(chat_eval, "TASKS", {**chat_eval.TASKS, "Arithmetic": lambda: quiz})
    result = chat_sft.main(COMMON + ["--examples-per-step", "4", "--num-iterations", "2", "--chat-eval-every", "1",
                                     "--chat-eval-tasks", "Arithmetic", "--chat-eval-max-problems", "3"])
    out = capsys.readouterr().out
    assert "start: mid step 2" in out and "chat_eval Sums " in out and "mean accuracy" in out
    assert result["chat_eval"] is not None and 0 <= result["chat_eval"] <= 1
    records = report.load_records()             # each stage recorded itself for the run report
    assert records["mid_train"]["metrics"]["steps"] == 2 and records["chat_sft"]["history"]["step"] == [1, 2]
    assert records["chat_sft"]["metrics"]["chat_eval"] == result["chat_eval"]


def test_no_training_mixture_holds_an_evaluated_split(monkeypatch):
    """Build the three stages' real mixture definitions with every task class replaced by a recorder, and check each
    (task, split) against the split chat_eval scores for that task (TASKS' own builders, recorded the same way)."""
    built = []

    def recorder(cls):
        class Recorded(Task):
            name, eval_split = cls.__name__, cls.eval_split

            def __init__(self, *args, **kwargs):
                split = kwargs.get("split") or next((a for a in args if a in ("train", "validation", "test")),
                                                    "train")
                super().__init__(split)
                built.append((cls.__name__, split))

            def num_examples(self):
                return 10
        return Recorded

    import tasks.arc, tasks.arithmetic, tasks.gsm8k, tasks.humaneval, tasks.knowledge, tasks.mmlu, tasks.spellingbee
    for module in (mid_train, chat_sft, tasks.arc, tasks.arithmetic, tasks.gsm8k, tasks.humaneval, tasks.knowledge,
                   tasks.mmlu, tasks.spellingbee):
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and issubclass(value, Task) and value not in (Task, TaskMixture):
                monkeypatch.setattr(module, attr, recorder(value))
    for name, build in chat_eval.TASKS.items():
        build()
    evaluated = set(built)
    assert {task for task, _ in evaluated} == {"ARC", "MMLU", "GSM8K", "HumanEval", "SpellingBee",
                                               "ArithmeticProblems", "CountryFacts", "WikiChoice"}
    for script in (mid_train, chat_sft):
        built.clear()
        script.mixtures(1.0, 42)
        assert built and not set(built) & evaluated, f"{script.__name__} trains on {set(built) & evaluated}"
    mixture, _ = chat_rl.build_tasks(chat_rl.parse_args(["--gsm8k", "on"]))     # RL's training questions
    trained = {(t.name, t.split) for t in mixture.tasks}
    assert len(trained) == 3 and not trained & evaluated, f"chat_rl trains on {trained & evaluated}"


def test_bad_flags_give_one_line(tiny_stages, capsys):
    for script, argv, message in [
            (chat_sft, ["--chat-eval-tasks", "ARC"], "unknown task 'ARC'"),
            (mid_train, ["--total-batch-size", "100"] + COMMON, "not a multiple of the row length"),
            (chat_sft, COMMON, "no mid checkpoint under"),
            (chat_sft, ["--max-seq-len", "128"] + COMMON + ["--source", "base"], "longer than the model's context")]:
        with pytest.raises(SystemExit) as stop:
            script.main(argv)
        text = str(stop.value.code) + capsys.readouterr().err
        assert message in text, text
