"""
Tests of chat evaluation (nanochat/chat_eval.py, scripts/chat_eval.py) with hand-made tasks, fake models and
engines, and tiny random GPTs: no registry data, no network.

    pytest tests/test_chat_eval.py -q
"""

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from conftest import tiny_gpt
from nanochat import chat_eval, report
from nanochat.chat_eval import TaskResult, chatcore, resolve_task_names, run_categorical, run_generative
from nanochat.checkpoint_manager import save_checkpoint
from nanochat.engine import Engine
from nanochat.execution import ALLOW_WEAK_ENV, SandboxCheck, SandboxRefused
from scripts import chat_eval as chat_eval_script
from tasks.common import Task, extract_answer, mc_conversation


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and spinning OpenMP threads next to a busy process make each forward
    pass 100x slower. Restored afterwards (the script's --threads sets the process-wide count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -----------------------------------------------------------------------------
# Hand-made tasks

class Listed(Task):
    """A task over a list of items, on its evaluated split."""

    def __init__(self, items):
        super().__init__("test")
        self.items = items

    def num_examples(self):
        return len(self.items)


class Quiz(Listed):
    """Multiple-choice questions (question, choices, gold index) as the real tasks render them."""
    name = "Quiz"
    eval_type = "categorical"

    def get_example(self, index):
        return mc_conversation(*self.items[index])

    def evaluate(self, conversation, completion):
        return completion.strip()[:1] == conversation["answer"]


class Sums(Listed):
    """'What is a + b?' answered '#### n'."""
    name = "Sums"
    eval_type = "generative"

    def get_example(self, index):
        a, b = self.items[index]
        return {"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                             {"role": "assistant", "content": f"#### {a + b}"}], "answer": str(a + b)}

    def evaluate(self, conversation, completion):
        return extract_answer(completion) == conversation["answer"]


QUIZ = [("Which is a colour?", ["red", "seven", "cat", "run"], 0),
        ("Pick the even number.", ["three", "four"], 1),
        ("What do cows drink?", ["milk", "water", "tea", "oil"], 1),
        ("Largest planet?", ["Mars", "Venus", "Jupiter", "Earth", "Pluto"], 2)]


# -----------------------------------------------------------------------------
# Categorical scoring

class TableModel(torch.nn.Module):
    """logits[t] = the column of a fixed table for the token at position t: what is read at which position and
    which tokens are ranked are then fully known."""

    def __init__(self, vocab_size, seq_len=512):
        super().__init__()
        self.config = type("Config", (), {"sequence_len": seq_len, "vocab_size": vocab_size})()
        self.lm_head = torch.nn.Linear(vocab_size, vocab_size, bias=False)
        torch.nn.init.zeros_(self.lm_head.weight)

    def set_logits(self, token, logits: dict):
        with torch.no_grad():
            for t, v in logits.items():
                self.lm_head.weight[t, token] = v

    def get_device(self):
        return torch.device("cpu")

    def forward(self, idx):
        return self.lm_head(torch.nn.functional.one_hot(idx, self.lm_head.in_features).float())


def test_letter_scoring_ranks_only_the_allowed_letters(byte_tok):
    model = TableModel(byte_tok.get_vocab_size())
    A, B, C, D, E = (byte_tok.encode(x)[0] for x in "ABCDE")
    at_answer = byte_tok.encode_special("<|assistant_start|>")
    # Highest: a non-letter token, then "E" (allowed only on a 5-choice question), then "C" > "B" > the others.
    model.set_logits(at_answer, {byte_tok.encode("x")[0]: 9.0, E: 8.0, C: 5.0, B: 4.0})
    model.set_logits(0, {A: 50.0})          # the padding token: reading a padded position would pick "A"
    task = Quiz([("q1", ["a", "b", "c", "d"], 2), ("a much longer question " * 4, ["a", "b", "c", "d"], 2),
                 ("q3", ["a", "b"], 1), ("q4", ["a", "b", "c", "d", "e"], 4)])
    result = run_categorical(model, byte_tok, task, batch_size=4, progress=False)
    assert result.answers == ["C", "C", "B", "E"]
    assert result.outcomes == [True, True, True, True] and result.accuracy == 1.0
    assert result.baseline == pytest.approx((1 / 4 + 1 / 4 + 1 / 2 + 1 / 5) / 4)      # per question, averaged
    assert result.centred == 1.0 and result.truncated == 0


def test_letters_must_be_single_tokens(byte_tok):
    assert chat_eval.letter_token_ids(byte_tok, ["A", "B"]) == [65, 66]
    with pytest.raises(ValueError, match="'AB' is 2 tokens"):
        chat_eval.letter_token_ids(byte_tok, ["AB"])


def reference_choice(model, tokenizer, conversation):
    """One prompt, full forward pass, no hooks: the highest allowed letter at the last position."""
    prompt, _ = chat_eval.categorical_prompt(tokenizer, conversation, model.config.sequence_len)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]))[0, -1]
    allowed = chat_eval.letter_token_ids(tokenizer, conversation["letters"])
    return conversation["letters"][int(logits[allowed].argmax())]


def test_batched_equals_one_at_a_time(byte_tok):
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=192, perturb=0.5).eval()
    items = [(f"Question {i}: " + "which one? " * (i % 5), ["alpha", "beta", "gamma", "delta"][: 2 + i % 3], i % 2)
             for i in range(10)]
    items.append(("This question is far too long for the context. " * 3, ["yes", "no"], 0))   # must be cut
    task = Quiz(items)
    batched = run_categorical(model, byte_tok, task, batch_size=4, progress=False)
    single = run_categorical(model, byte_tok, task, batch_size=1, progress=False)
    reference = [reference_choice(model, byte_tok, c) for c in task]
    assert batched.answers == single.answers == reference
    assert len(set(reference)) > 1          # control: the model does not pick the same letter for everything
    assert batched.truncated == 1


# -----------------------------------------------------------------------------
# Generative scoring

class FakeEngine:
    """Replies from a script: replies[question][k] is sample k's text. Records each call's sampling settings."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.calls = tokenizer, replies, []

    def fit_prompt(self, messages, max_tokens):
        return self.tokenizer.render_for_completion({"messages": messages}), max_tokens, 0

    def generate_batch(self, prompt, num_samples=1, **kwargs):
        question = self.tokenizer.decode(prompt[2:-2])            # bos, user_start ... user_end, assistant_start
        self.calls.append({"question": question, "num_samples": num_samples, **kwargs})
        return [prompt + self.tokenizer.encode(text) for text in self.replies[question][:num_samples]], None


def test_generative_scores_the_replies_with_task_evaluate(byte_tok):
    task = Sums([(1, 2), (3, 4), (10, 5)])
    engine = FakeEngine(byte_tok, {"What is 1 + 2?": ["1 + 2 = 3\n#### 3"], "What is 3 + 4?": ["#### 8"],
                                   "What is 10 + 5?": ["<|python_start|>10+5<|python_end|> #### 15"]})
    result = run_generative(engine, task, max_new_tokens=20, progress=False)
    assert result.outcomes == [True, False, True] and result.accuracy == pytest.approx(2 / 3)
    assert result.baseline == 0 and result.centred == result.accuracy and result.metric == "accuracy"
    assert result.answers[1] == "#### 8"                         # the reply alone, without the prompt
    assert [c["temperature"] for c in engine.calls] == [0.0] * 3 and engine.calls[0]["max_tokens"] == 20


def test_pass_at_k(byte_tok):
    task = Sums([(1, 1), (2, 2), (3, 3)])
    engine = FakeEngine(byte_tok, {"What is 1 + 1?": ["#### 3", "#### 2", "#### 5"],     # one of three right
                                   "What is 2 + 2?": ["#### 5", "#### 5", "#### 5"],     # none
                                   "What is 3 + 3?": ["#### 6", "#### 6", "#### 6"]})    # all
    result = run_generative(engine, task, num_samples=3, temperature=1.0, seed=7, progress=False)
    assert result.outcomes == [True, False, True] and result.samples_passed == [1, 0, 3]
    assert result.metric == "pass@3" and result.summary()["sample_accuracy"] == pytest.approx(4 / 9)
    # its error: the spread of the per-problem rates 1/3, 0, 1 (sample variance 7/27) over sqrt(3 problems)
    assert result.summary()["sample_accuracy_stderr"] == pytest.approx((7 / 27 / 3) ** 0.5)
    assert "pass@1 0.4444 ± 0.2940" in result.line()
    assert [c["seed"] for c in engine.calls] == [7, 8, 9] and {c["num_samples"] for c in engine.calls} == {3}
    one = run_generative(engine, task, num_samples=1, temperature=1.0, progress=False)   # pass@1: first samples only
    assert one.outcomes == [False, False, True]


def test_generative_with_the_real_engine(byte_tok):
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=64, perturb=0.5).eval()
    engine = Engine(model, byte_tok)
    seen = []

    class Recorder(Sums):
        def evaluate(self, conversation, completion):
            seen.append(completion)
            return True

    result = run_generative(engine, Recorder([(1, 2), (2, 3)]), max_new_tokens=10, progress=False)
    assert result.accuracy == 1.0
    for (a, b), reply in zip([(1, 2), (2, 3)], seen):
        prompt = byte_tok.render_for_completion({"messages": [{"role": "user", "content": f"What is {a} + {b}?"}]})
        rows, _ = engine.generate_batch(prompt, max_tokens=10, temperature=0.0)
        assert reply == byte_tok.decode(rows[0][len(prompt):])


# -----------------------------------------------------------------------------
# Task selection and ChatCORE

def test_task_names():
    assert resolve_task_names(None) == resolve_task_names("all") == list(chat_eval.TASKS)
    assert resolve_task_names("gsm8k, ARC-Easy,GSM8K") == ["GSM8K", "ARC-Easy"]
    with pytest.raises(ValueError, match="unknown task 'ARC'.*ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval"):
        resolve_task_names("ARC,MMLU")


def result(name, accuracy, n, baseline, eval_type="categorical"):
    right = round(accuracy * n)
    return TaskResult(name, eval_type, [True] * right + [False] * (n - right), baseline, 1.0)


def test_chatcore_label_and_arithmetic():
    arc, gsm = result("ARC-Easy", 0.5, 100, 0.25), result("GSM8K", 0.1, 100, 0.0, "generative")
    assert arc.centred == pytest.approx(1 / 3) and arc.stderr == pytest.approx(0.05)
    assert arc.centred_stderr == pytest.approx(0.05 / 0.75)
    score = chatcore([arc, gsm])
    assert score["label"] == "ChatCORE (2 of 6 tasks: ARC-Easy, GSM8K)"
    assert score["value"] == pytest.approx((1 / 3 + 0.1) / 2)
    assert score["stderr"] == pytest.approx(math.sqrt((0.05 / 0.75) ** 2 + 0.03 ** 2) / 2)
    assert score["missing"] == ["ARC-Challenge", "MMLU", "HumanEval", "SpellingBee"]
    everything = chatcore([result(name, 0.25, 8, 0.25) for name in chat_eval.TASKS])   # Arithmetic among them
    assert everything["label"] == "ChatCORE (all 6 tasks)" and everything["value"] == 0 and not everything["missing"]
    assert "Arithmetic" in chat_eval.TASKS and "Arithmetic" not in everything["tasks"]
    assert chatcore([result("Arithmetic", 0.5, 10, 0.0, "generative")]) is None


# -----------------------------------------------------------------------------
# The script, in-process, on a tiny saved checkpoint

@pytest.fixture
def sft_checkpoint(base_dir, byte_tok, monkeypatch):
    """A tiny random sft checkpoint, and TASKS replaced by two hand-made tasks."""
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=64, perturb=0.5)
    directory = base_dir / "base" / "chatsft_checkpoints" / "d1"
    save_checkpoint(str(directory), 3, model.state_dict(), None, {"step": 3, "model_config": asdict(model.config)})
    monkeypatch.setattr(chat_eval, "TASKS", {"Quiz": lambda: Quiz(QUIZ), "Sums": lambda: Sums([(1, 2), (4, 4)])})
    monkeypatch.setattr(chat_eval, "CHATCORE_TASKS", ["Quiz", "Sums"])
    return directory


def test_script_end_to_end(sft_checkpoint, capsys):
    argv = ["-i", "sft", "--max-tokens", "8", "--quantize", "none", "--device-type", "cpu"]
    results = chat_eval_script.main(argv)
    assert list(results["tasks"]) == ["Quiz", "Sums"] and results["chatcore"]["label"] == "ChatCORE (all 2 tasks)"
    assert results["tasks"]["Quiz"]["n"] == 4 and results["tasks"]["Sums"]["n"] == 2
    saved = json.loads((sft_checkpoint / "chat_eval_000003.json").read_text())
    assert saved["step"] == 3 and saved["chatcore"] == results["chatcore"] and saved["tasks"] == results["tasks"]
    out = capsys.readouterr().out
    assert "Quiz " in out and "ChatCORE (all 2 tasks): " in out and "chat_eval_000003.json" in out

    results = chat_eval_script.main(argv + ["-a", "quiz", "--max-problems", "2", "--batch-size", "1"])
    assert results["chatcore"]["label"] == "ChatCORE (1 of 2 tasks: Quiz)" and results["tasks"]["Quiz"]["n"] == 2


def one_line_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        chat_eval_script.main(argv)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_bad_flags_give_one_line(capsys):
    line = one_line_error(["-a", "ARC-Easy,Spelling"], capsys)
    assert "unknown task 'Spelling'" in line and "ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval, SpellingBee" in line
    assert "needs --temperature > 0" in one_line_error(["--num-samples", "4"], capsys)
    assert "-i/--source: invalid choice: 'final'" in one_line_error(["-i", "final"], capsys)
    assert "--max-problems: 0 is not a positive integer or -1" in one_line_error(["--max-problems", "0"], capsys)


# -----------------------------------------------------------------------------
# Tasks that run the model's code: the sandbox is checked first, and a weak one marks every figure

class CodeSums(Sums):
    name = "HumanEval"
    runs_code = True


@pytest.fixture
def with_code_task(sft_checkpoint, monkeypatch):
    monkeypatch.setattr(chat_eval, "TASKS", {"Quiz": lambda: Quiz(QUIZ), "HumanEval": lambda: CodeSums([(1, 2)])})
    monkeypatch.setattr(chat_eval, "CHATCORE_TASKS", ["Quiz", "HumanEval"])
    return sft_checkpoint


def test_an_unsafe_sandbox_stops_chat_eval_before_any_task(with_code_task, monkeypatch, capsys):
    def refuse(allow_weak=None):
        raise SandboxRefused("the sandbox will not run untrusted code on this machine: mount is off")
    monkeypatch.setattr(chat_eval, "check_sandbox", refuse)
    with pytest.raises(SystemExit, match="error: the sandbox will not run untrusted code"):
        chat_eval_script.main(["-i", "sft", "--max-tokens", "8", "--quantize", "none", "--device-type", "cpu"])
    assert "Quiz " not in capsys.readouterr().out                  # refused before the first task ran
    assert not (with_code_task / "chat_eval_000003.json").exists()


def test_a_weak_sandbox_marks_every_figure_it_touches(with_code_task, base_dir, monkeypatch, capsys):
    monkeypatch.delenv(ALLOW_WEAK_ENV, raising=False)
    weak = SandboxCheck(("nproc", "net", "pid"), {"mount": "switched off"}, True)
    monkeypatch.setattr(chat_eval, "check_sandbox", lambda allow_weak=None: weak)
    results = chat_eval_script.main(["-i", "sft", "--max-tokens", "8", "--quantize", "none", "--device-type", "cpu",
                                     "--allow-weak-sandbox"])
    assert os.environ[ALLOW_WEAK_ENV] == "1"                       # the flag is the opt-in the sandbox reads
    lines = capsys.readouterr().out.splitlines()
    figures = [line for line in lines if line.startswith(("HumanEval  ", "ChatCORE"))]   # the score lines
    assert len(figures) == 2 and all("weak sandbox: without mount" in line for line in figures)
    assert any("runs the model's code; sandbox: WEAK" in line for line in lines)
    assert not any("weak" in line for line in lines if line.startswith("Quiz "))
    saved = json.loads((with_code_task / "chat_eval_000003.json").read_text())
    assert saved["tasks"]["HumanEval"]["note"] == "weak sandbox: without mount" and "note" not in saved["tasks"]["Quiz"]
    assert saved["tasks"]["HumanEval"]["sandbox"]["missing"] == {"mount": "switched off"}
    assert "HumanEval: weak sandbox" in saved["chatcore"]["note"] and results["chatcore"]["note"]
    text = Path(report.generate()).read_text()
    assert "(weak sandbox: without mount)" in text and "sandbox (HumanEval)=nproc, net, pid (WEAK)" in text
    monkeypatch.delenv(ALLOW_WEAK_ENV)
