"""
Tests of the CORE evaluator (nanochat/core_eval.py) and scripts/base_eval.py on hand-made tasks and bundles: the
scoring rules on hand-computed cases, gold and random scorers, few-shot prompts, cropping, batched vs one at a time,
and base_eval end to end on a tiny checkpoint.

    pytest tests/test_core_eval.py -q
"""

import json
import math
import random
from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_gpt
from nanochat import core_eval
from nanochat.checkpoint_manager import save_checkpoint
from nanochat.core_eval import (Row, continuation_logits, evaluate_task, evaluate_tasks, fewshot_indices,
                                format_core, item_indices, item_rows, pick, score_rows)
from nanochat.eval_bundle import CORE_LABELS, write_bundle
from scripts import base_eval

WORDS = "red blue green cat dog sun moon tree river house stone bird".split()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tiny matmuls gain nothing from two, and two threads crawl when another process keeps
    the cores busy (20 s instead of 0.5 s for the batched-vs-single test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mc_examples(n, seed=0):
    rng = random.Random(seed)
    return [{"query": f"Question #{i}#: which word is {rng.choice(WORDS)}?",
             "choices": rng.sample(WORDS, 4), "gold": rng.randrange(4)} for i in range(n)]


def schema_examples(n, seed=1):
    rng = random.Random(seed)
    return [{"context_options": [f"Story #{i}#: Ann {w}" for w in rng.sample(WORDS, 2)],
             "continuation": f"so she left {rng.choice(WORDS)}.", "gold": rng.randrange(2)} for i in range(n)]


def lm_examples(n, seed=2):
    rng = random.Random(seed)
    return [{"context": f"Fact #{i}#: the {rng.choice(WORDS)} is", "continuation": rng.choice(WORDS)}
            for i in range(n)]


def make_task(label, kind, examples, shots=2, baseline=0.25, delim=" "):
    return {"label": label, "icl_task_type": kind, "num_fewshot": shots, "continuation_delimiter": delim,
            "random_baseline": baseline, "examples": examples}


def three_tasks(n=40):
    return [make_task("arc_easy", "multiple_choice", mc_examples(n), shots=3, baseline=0.25, delim="\nAnswer: "),
            make_task("winogrande", "schema", schema_examples(n), shots=2, baseline=0.5),
            make_task("lambada_openai", "language_modeling", lm_examples(n), shots=2, baseline=0.0)]


class RandomHead(torch.nn.Module):
    def __init__(self, vocab, seed):
        super().__init__()
        self.vocab, self.gen = vocab, torch.Generator().manual_seed(seed)

    def forward(self, x):
        return torch.randn(*x.shape[:-1], self.vocab, generator=self.gen)


class RandomLogits(torch.nn.Module):
    """A fake model: uniform random logits, drawn only where continuation_logits asks for them."""

    def __init__(self, vocab, seq_len=4096, seed=0):
        super().__init__()
        self.lm_head = RandomHead(vocab, seed)
        self.config = SimpleNamespace(sequence_len=seq_len)

    def forward(self, ids):
        return self.lm_head(torch.zeros(*ids.shape, 1))


class BigramLogits(torch.nn.Module):
    """A fake model whose logits at a position are table[token there]: hand-computable losses."""

    def __init__(self, table):
        super().__init__()
        self.lm_head, self.table = torch.nn.Identity(), table
        self.config = SimpleNamespace(sequence_len=64)

    def forward(self, ids):
        return self.lm_head(self.table[ids])


def gold_scorer(task):
    """Loss 0 for the gold option, 1 for the others; every greedy token right."""
    def score(rows):
        return [(0.0 if row.option == task["examples"][row.item].get("gold", 0) else 1.0, True) for row in rows]
    return score


def model_scorer(model, batch_size=8):
    return lambda rows: score_rows(model, rows, "cpu", torch.float32, batch_size)


# -----------------------------------------------------------------------------
# Scoring rules

def test_gold_scorer_gets_centred_one_on_every_task_type(byte_tok):
    for task in three_tasks():
        r = evaluate_task(task, byte_tok, gold_scorer(task), context_len=4096)
        assert r["accuracy"] == 1.0 and r["centred"] == pytest.approx(1.0), task["label"]
    results = evaluate_tasks(three_tasks(), byte_tok, lambda rows: [(0.0, True)] * len(rows), 4096, progress=False)
    assert results["tasks"]["lambada_openai"]["centred"] == 1.0     # LM: exact match is all that counts


def test_random_model_gets_centred_zero_within_its_error(byte_tok):
    tasks = three_tasks(n=150)
    results = evaluate_tasks(tasks, byte_tok, model_scorer(RandomLogits(byte_tok.get_vocab_size()), 64), 4096,
                             progress=False)
    for label, r in results["tasks"].items():
        assert abs(r["centred"]) <= 3 * r["centred_stderr"] + 1e-9, (label, r["centred"], r["centred_stderr"])
    assert abs(results["core"]) <= 3 * results["core_stderr"]
    # Control: the same check catches a scorer that knows the answer for one item in three.
    mc = tasks[0]
    oracle, rand = gold_scorer(mc), model_scorer(RandomLogits(byte_tok.get_vocab_size()), 64)
    half = evaluate_task(mc, byte_tok, lambda rows: [o if row.item % 3 == 0 else r for row, o, r in
                                                     zip(rows, oracle(rows), rand(rows))], 4096)
    assert half["centred"] > 3 * half["centred_stderr"]
    assert results["tasks"]["arc_easy"]["stderr"] == pytest.approx(
        math.sqrt(results["tasks"]["arc_easy"]["accuracy"] * (1 - results["tasks"]["arc_easy"]["accuracy"]) / 150))


def test_mean_loss_choice_and_exact_match_hand_computed():
    # Vocabulary of 4. After any token: log-probs of tokens 0..3 are those of logits [2, 1, 0, 0].
    logits = torch.tensor([2.0, 1.0, 0.0, 0.0])
    table = logits.expand(4, 4).clone()
    table[3] = torch.tensor([0.0, 0.0, 0.0, 5.0])            # after token 3, token 3 is by far the likeliest
    model = BigramLogits(table)
    nll = (torch.logsumexp(logits, 0) - logits).tolist()     # loss of each token after tokens 0-2
    rows = [Row([0, 2, 1, 1, 1], 2, 0, 0),                   # continuation 1 1 1: mean nll[1], sum 3 nll[1]
            Row([0, 2, 2], 2, 0, 1),                         # continuation 2:     mean nll[2], a smaller sum
            Row([1, 0, 0], 1, 1, 0),                         # greedy after 1 is 0, after 0 is 0: exact
            Row([1, 0, 3, 3], 1, 2, 0),                      # after 0 greedy is 0, not 3: not exact
            Row([3, 3, 3], 1, 3, 0)]                         # after 3 greedy is 3: exact
    scores = score_rows(model, rows, "cpu", torch.float32, batch_size=2)
    assert scores[0][0] == pytest.approx(nll[1]) and scores[1][0] == pytest.approx(nll[2])
    assert 3 * nll[1] > nll[2] > nll[1]
    assert pick("multiple_choice", scores[:2]) == 0           # the lowest MEAN wins, though its sum is larger
    assert pick("schema", [(1.0, False), (0.5, False), (0.5, False)]) == 1   # ties: the first
    assert [s[1] for s in scores[2:]] == [True, False, True]
    assert pick("language_modeling", [scores[3]]) is False and pick("language_modeling", [scores[4]]) is True


def test_continuation_logits_equal_the_full_forward():
    model = tiny_gpt(265, depth=2, seq_len=32, perturb=0.3)
    ids = torch.randint(0, 265, (3, 20), generator=torch.Generator().manual_seed(0))
    rows, cols = torch.tensor([0, 0, 2, 1]), torch.tensor([5, 19, 0, 7])
    with torch.no_grad():
        full = model(ids)
        torch.testing.assert_close(continuation_logits(model, ids, rows, cols), full[rows, cols])
        assert len(model.lm_head._forward_pre_hooks) == 0    # the hook is removed again


# -----------------------------------------------------------------------------
# Prompts

def test_fewshot_never_contains_the_item_and_is_fixed(byte_tok):
    for n, k in [(2, 1), (5, 4), (50, 10), (11, 10)]:
        for idx in range(n):
            shots = fewshot_indices(n, idx, k)
            assert idx not in shots and len(set(shots)) == len(shots) == min(k, n - 1)
            assert shots == fewshot_indices(n, idx, k)
    for task in three_tasks():
        for idx in range(len(task["examples"])):
            for row in item_rows(task, idx, byte_tok, context_len=4096):
                text = byte_tok.decode(row.tokens)
                assert text.startswith("<|bos|>") and text.count(f"#{idx}#") == 1     # the item once: scored
                assert text.count("\n\n") == task["num_fewshot"]


def test_prompts_do_not_depend_on_batching_or_the_subset(byte_tok):
    task = three_tasks()[0]
    seen = {}

    def recorder(tag):
        def score(rows):
            for row in rows:
                seen.setdefault(tag, {})[(row.item, row.option)] = (tuple(row.tokens), row.start)
            return [(float(len(row.tokens)), False) for row in rows]
        return score

    a = evaluate_task(task, byte_tok, recorder("all"), 4096, chunk_rows=7)
    b = evaluate_task(task, byte_tok, recorder("sub"), 4096, max_items=10, chunk_rows=1000)
    assert b["n"] == 10 and set(b["items"]) < set(a["items"])
    assert all(seen["sub"][key] == seen["all"][key] for key in seen["sub"])
    assert b["picks"] == [a["picks"][a["items"].index(i)] for i in b["items"]]
    assert item_indices(100, 10) == item_indices(100, 10) and set(item_indices(100, 10)) < set(item_indices(100, 20))


def test_continuations_by_task_type(byte_tok):
    mc, schema, lm = three_tasks()
    rows = item_rows(mc, 0, byte_tok, 4096)
    ex = mc["examples"][0]
    for r in rows:      # after the choices' common prefix (the byte tokens of "sun" and "stone" share the "s")
        tail = byte_tok.decode(r.tokens[r.start:])
        assert tail and ex["choices"][r.option].endswith(tail)
        assert byte_tok.decode(r.tokens).endswith(ex["query"] + "\nAnswer: " + ex["choices"][r.option])
    assert len({tuple(r.tokens[:r.start]) for r in rows}) == 1        # the same context for every choice
    rows = item_rows(schema, 0, byte_tok, 4096)
    tails = {byte_tok.decode(r.tokens[r.start:]) for r in rows}
    assert len(tails) == 1 and tails.pop().endswith(schema["examples"][0]["continuation"])
    (row,) = item_rows(lm, 0, byte_tok, 4096)
    assert byte_tok.decode(row.tokens[row.start:]) == " " + lm["examples"][0]["continuation"]


def test_long_prompts_are_cropped_from_the_left(byte_tok):
    task = make_task("arc_easy", "multiple_choice", mc_examples(30), shots=10, delim="\nAnswer: ")
    full = item_rows(task, 3, byte_tok, 4096)
    cropped = item_rows(task, 3, byte_tok, 64)
    for f, c in zip(full, cropped):
        assert len(f.tokens) > 65 and len(c.tokens) == 65 and c.tokens == f.tokens[-65:]
        assert c.tokens[c.start:] == f.tokens[f.start:]                # the continuation is whole
    assert core_eval._crop(list(range(10)), 2, 4) == ([5, 6, 7, 8, 9], 1)   # longer than the context: its tail


# -----------------------------------------------------------------------------
# A real (tiny) model

def test_tiny_model_same_picks_batched_and_one_at_a_time(byte_tok):
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=2, seq_len=96, perturb=0.5).eval()
    tasks = three_tasks(n=8)
    batched = evaluate_tasks(tasks, byte_tok, model_scorer(model, 16), 96, progress=False)
    single = evaluate_tasks(tasks, byte_tok, model_scorer(model, 1), 96, progress=False)
    for label in batched["tasks"]:
        assert batched["tasks"][label]["picks"] == single["tasks"][label]["picks"], label
    rows = [row for i in range(6) for row in item_rows(tasks[0], i, byte_tok, 96)]
    for a, b in zip(model_scorer(model, 16)(rows), model_scorer(model, 1)(rows)):
        assert a[0] == pytest.approx(b[0], abs=1e-4) and a[1] == b[1]


def test_format_core_names_missing_tasks(byte_tok):
    results = evaluate_tasks(three_tasks(n=5), byte_tok, lambda rows: [(0.0, True)] * len(rows), 4096,
                             max_per_task=3, progress=False)
    line = format_core(results)
    assert line.startswith("CORE (3 of 22 tasks): ") and "hellaswag_zeroshot" in line and "arc_easy" not in line
    assert "at most 3 items per task" in line and results["line"] == line
    assert results["present"] == 3 and results["total"] == 22 and len(results["missing"]) == 19
    everything = {**results, "present": 22, "missing": [], "max_per_task": None}
    assert format_core(everything).startswith("CORE: ")


# -----------------------------------------------------------------------------
# scripts/base_eval.py end to end

@pytest.fixture
def checkpoint_and_bundle(base_dir, byte_tok):
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=64, perturb=0.3)
    meta = {"step": 5, "model_config": asdict(model.config)}
    checkpoint_dir = base_dir / "base" / "base_checkpoints" / "d1"
    save_checkpoint(str(checkpoint_dir), 5, model.state_dict(), None, meta)
    mc, schema, lm = three_tasks(n=8)
    bundle = base_dir / "bundle"
    write_bundle(bundle, {"arc_easy": mc["examples"], "winogrande": schema["examples"],
                          "lambada_openai": lm["examples"]}, {}, source="hand-made test bundle")
    return checkpoint_dir, bundle


def test_base_eval_end_to_end(checkpoint_and_bundle, capsys):
    checkpoint_dir, bundle = checkpoint_and_bundle
    results = base_eval.main(["--bundle-dir", str(bundle), "--max-per-task", "5", "--batch-size", "4"])
    out = capsys.readouterr().out
    assert "| task | accuracy | ± stderr | centred | n | seconds |" in out
    for label in ("arc_easy", "winogrande", "lambada_openai"):
        assert f"| {label} | " in out and results["tasks"][label]["n"] == 5
    core_line = next(line for line in out.splitlines() if line.startswith("CORE"))
    assert core_line.startswith("CORE (3 of 22 tasks): ") and "missing: hellaswag_zeroshot, jeopardy" in core_line
    path = checkpoint_dir / "core_000005_max5.json"
    assert f"wrote {path}" in out
    saved = json.loads(path.read_text())
    assert saved["line"] == core_line and saved["missing"] == [t for t in CORE_LABELS if t not in results["tasks"]]
    assert saved["tasks"]["arc_easy"]["picks"] == results["tasks"]["arc_easy"]["picks"]
    assert saved["step"] == 5 and saved["bundle_source"] == "hand-made test bundle"
    one_at_a_time = base_eval.main(["--bundle-dir", str(bundle), "--max-per-task", "5", "--batch-size", "1"])
    for label, r in results["tasks"].items():
        assert one_at_a_time["tasks"][label]["picks"] == r["picks"], label
    # The bundle gives arc_easy its CORE 10 shots: far longer than the 64-token context, cropped and scored.
    assert results["tasks"]["arc_easy"]["num_fewshot"] == 10


def test_base_eval_bad_task_name_is_one_line(checkpoint_and_bundle):
    _, bundle = checkpoint_and_bundle
    with pytest.raises(SystemExit) as stop:
        base_eval.main(["--bundle-dir", str(bundle), "--tasks", "arc_easy,nope,winograd"])
    message = str(stop.value.code)
    assert len(message.splitlines()) == 1 and message.startswith("error: unknown task 'nope', 'winograd'")
    assert "winograd: CORE tasks missing from this bundle" in message
    assert message.endswith("the bundle has: arc_easy, lambada_openai, winogrande")
    with pytest.raises(SystemExit) as stop:
        base_eval.main(["--bundle-dir", str(bundle / "nowhere")])
    message = str(stop.value.code)
    assert len(message.splitlines()) == 1 and message.startswith("error: CORE eval bundle: ") and "core.yaml" in message
