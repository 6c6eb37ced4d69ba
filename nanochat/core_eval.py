"""
The CORE metric (DCLM) of a base model, plus the evaluation arithmetic shared with chat_eval: accuracy centred by a
task's random baseline, and standard errors.

CORE: 22 in-context-learning tasks from the eval bundle (format: nanochat/eval_bundle.py). Every item is scored with
the task's number of few-shot examples, drawn with random.Random(FEWSHOT_SEED + item index) from the task's other
items and shown with their gold answers, blank lines between, <|bos|> first.
    multiple_choice    one prompt per choice, `query + delimiter + choice`; the continuation scored is the tokens
                       after the choices' common prefix; the choice with the lowest mean cross-entropy wins
    schema             one prompt per context option, `option + delimiter + continuation`; scored on the options'
                       common suffix; lowest mean cross-entropy wins
    language_modeling  `context + delimiter + continuation`; correct only if the greedy (argmax) token equals every
                       continuation token
Prompts longer than the model's context lose tokens from the left (the continuation stays). Each task's accuracy is
centred, (acc - b) / (1 - b) with b its random baseline; CORE = the mean centred accuracy over the tasks.

Batching: the prompts of many items (CHUNK_ROWS of them, across items) are sorted by length and cut into batches of
at most batch_size prompts and batch_tokens tokens, padding included (right padding, harmless under causal
attention). The lm_head runs only on the positions that predict a continuation token, not on the whole batch.

    from nanochat.core_eval import evaluate_core, format_core, format_table
    results = evaluate_core(model, tokenizer, device, dtype, max_per_task=100)   # dtype: the autocast dtype
    print(format_table(results)); print(format_core(results))
From the command line: python -m scripts.base_eval --max-per-task 100
Tests: pytest tests/test_core_eval.py -q
"""

import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nanochat.common import UserError, autocast_ctx
from nanochat.eval_bundle import CORE_LABELS, load_core_tasks, load_manifest, load_task

FEWSHOT_SEED = 1234      # the shots of item i come from random.Random(FEWSHOT_SEED + i)
SUBSET_SEED = 1337       # --max-per-task N takes the first N items of one seeded shuffle: the same items every run
CHUNK_ROWS = 512         # prompts sorted by length together: enough that padding stays small
BATCH_SIZE = 64          # at most this many prompts per forward pass...
BATCH_TOKENS = 4096      # ...and this many tokens, padding included (more runs slower on a CPU: see README.md)


# -----------------------------------------------------------------------------
# Arithmetic (shared with chat_eval)

def centred(accuracy: float, baseline: float) -> float:
    """(accuracy - b) / (1 - b): 0 for random guessing, 1 for a perfect score (b = the random baseline, a fraction)."""
    return (accuracy - baseline) / (1 - baseline)


def standard_error(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent items (binomial): sqrt(p (1 - p) / n)."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n > 0 else float("nan")


def mean_with_error(values: list[float], errors: list[float]) -> tuple[float, float]:
    """Mean of k independent measurements and its standard error, sqrt(sum se_i^2) / k."""
    k = len(values)
    return sum(values) / k, math.sqrt(sum(e * e for e in errors)) / k


# -----------------------------------------------------------------------------
# Prompts: item -> rows (one token sequence per option, scored on its tail)

@dataclass
class Row:
    """One sequence to score: tokens[start:] is the continuation. item/option say where it came from."""
    tokens: list[int]
    start: int
    item: int
    option: int


def fewshot_indices(n_items: int, idx: int, k: int) -> list[int]:
    """k distinct items other than idx, the same for idx whatever else is evaluated."""
    k = min(k, n_items - 1)
    if k <= 0:
        return []
    rng = random.Random(FEWSHOT_SEED + idx)
    return [j + (j >= idx) for j in rng.sample(range(n_items - 1), k)]   # skip idx without building a list


def item_indices(n_items: int, max_items: int | None = None) -> list[int]:
    """All items, or a fixed seeded subset of max_items of them (nested: the first 100 are in the first 200)."""
    if max_items is None or max_items < 0 or max_items >= n_items:
        return list(range(n_items))
    order = list(range(n_items))
    random.Random(SUBSET_SEED).shuffle(order)
    return sorted(order[:max_items])


def _solved(kind: str, ex: dict, delim: str) -> str:
    """An example as a few-shot demonstration: rendered with its gold answer."""
    if kind == "multiple_choice":
        return ex["query"] + delim + ex["choices"][ex["gold"]]
    if kind == "schema":
        return ex["context_options"][ex["gold"]] + delim + ex["continuation"]
    return ex["context"].strip() + delim + ex["continuation"]


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs):
            return i
    return n


def _crop(tokens: list[int], start: int, context_len: int) -> tuple[list[int], int]:
    """Keep the last context_len + 1 tokens (the model reads all but the last); at least one token stays before
    the continuation, since it predicts the first continuation token."""
    cut = max(0, len(tokens) - (context_len + 1))
    return tokens[cut:], max(1, start - cut)


def item_rows(task: dict, idx: int, tokenizer, context_len: int) -> list[Row]:
    """The rows that score item idx of a task: one per choice / context option, one for language modelling."""
    kind, delim, examples = task["icl_task_type"], task["continuation_delimiter"], task["examples"]
    ex = examples[idx]
    shots = "".join(_solved(kind, examples[j], delim) + "\n\n"
                    for j in fewshot_indices(len(examples), idx, task["num_fewshot"]))
    bos = tokenizer.get_bos_token_id()
    encode = lambda texts: [tokenizer.encode(t, prepend=bos) for t in texts]   # noqa: E731 (a list call starts threads)
    if kind == "multiple_choice":
        seqs = encode([shots + ex["query"] + delim + c for c in ex["choices"]])
        starts = [_common_prefix(seqs)] * len(seqs)
    elif kind == "schema":
        seqs = encode([shots + o + delim + ex["continuation"] for o in ex["context_options"]])
        suffix = _common_prefix([s[::-1] for s in seqs])
        starts = [len(s) - suffix for s in seqs]
    elif kind == "language_modeling":
        context = shots + ex["context"].strip() + delim
        # The context without its trailing space: " word" is one token, so "... Answer:" tokenizes as a prefix of
        # "... Answer: word" and the continuation is " word", whole.
        head, full = encode([context.rstrip(), context + ex["continuation"]])
        seqs, starts = [full], [_common_prefix([head, full])]
    else:
        raise ValueError(f"{task['label']}: unknown icl_task_type {kind!r}")
    rows = []
    for option, (seq, start) in enumerate(zip(seqs, starts)):
        start = min(max(start, 1), len(seq) - 1)   # >= 1 continuation token, even if one choice prefixes another
        rows.append(Row(*_crop(seq, start, context_len), idx, option))
    return rows


# -----------------------------------------------------------------------------
# Scoring: rows -> (mean continuation loss, every greedy token right) -> the item's pick

def continuation_logits(model, ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Soft-capped fp32 logits at positions (rows[i], cols[i]) of model(ids): (N, vocab).

    A forward pre-hook hands the lm_head only those hidden states (GPT.forward soft-caps the lm_head's output
    elementwise and returns it), so the largest matmul of a small model runs on a few positions per prompt
    instead of all of them; tests/test_core_eval.py checks the result against the full logits."""
    handle = model.lm_head.register_forward_pre_hook(lambda module, args: (args[0][rows, cols],))
    try:
        logits = model(ids)
    finally:
        handle.remove()
    if logits.shape[:-1] != rows.shape:
        raise RuntimeError(f"expected logits for {len(rows)} positions, got {tuple(logits.shape)}: did GPT.forward "
                           "stop applying lm_head last?")
    return logits.float()


def length_batches(lengths: list[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most batch_size sequences and batch_tokens padded tokens
    (one sequence alone may exceed it)."""
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[i] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def score_rows(model, rows: list[Row], device, dtype: torch.dtype, batch_size: int = BATCH_SIZE,
               batch_tokens: int = BATCH_TOKENS) -> list[tuple[float, bool]]:
    """(mean cross-entropy over the continuation, whether argmax matched every continuation token) per row, in
    order. Rows are sorted by length and run in right-padded batches (length_batches) under autocast to dtype."""
    out = [None] * len(rows)
    device = torch.device(device)
    for batch in length_batches([len(r.tokens) - 1 for r in rows], batch_size, batch_tokens):
        width = max(len(rows[i].tokens) for i in batch) - 1          # inputs: every token but the last
        ids, r_idx, c_idx, targets, counts = [], [], [], [], []
        for b, i in enumerate(batch):
            row = rows[i]
            n = len(row.tokens) - 1
            ids.append(row.tokens[:-1] + [0] * (width - n))
            r_idx += [b] * (n - row.start + 1)
            c_idx += range(row.start - 1, n)                          # position p predicts token p + 1
            targets += row.tokens[row.start:]
            counts.append(n - row.start + 1)
        ids = torch.tensor(ids, dtype=torch.long, device=device)
        with autocast_ctx(device, dtype):
            logits = continuation_logits(model, ids, torch.tensor(r_idx, device=device),
                                         torch.tensor(c_idx, device=device))
        targets = torch.tensor(targets, device=device)
        losses = F.cross_entropy(logits, targets, reduction="none")
        hits = logits.argmax(dim=-1) == targets
        for i, loss, hit in zip(batch, losses.split(counts), hits.split(counts)):
            out[i] = (loss.mean().item(), bool(hit.all()))
    return out


def pick(kind: str, scores: list[tuple[float, bool]]):
    """Multiple choice / schema: the option with the lowest mean loss (the first on a tie).
    Language modelling: True when every greedy token matched."""
    if kind == "language_modeling":
        return scores[0][1]
    losses = [loss for loss, _ in scores]
    return losses.index(min(losses))


def is_correct(kind: str, ex: dict, picked) -> bool:
    return bool(picked) if kind == "language_modeling" else picked == ex["gold"]


# -----------------------------------------------------------------------------
# Tasks -> CORE

def evaluate_task(task: dict, tokenizer, score, context_len: int, max_items: int | None = None,
                  chunk_rows: int = CHUNK_ROWS, bar=None) -> dict:
    """Accuracy of one task. score(rows) -> [(mean_loss, all_greedy_match)] per row (score_rows, or a fake).
    Returns {accuracy, stderr, centred, centred_stderr, n, seconds, random_baseline, items, picks}."""
    t0 = time.perf_counter()
    kind, examples = task["icl_task_type"], task["examples"]
    items = item_indices(len(examples), max_items)
    picks = []

    def flush(chunk, rows):
        by_item = {}
        for row, s in zip(rows, score(rows)):
            by_item.setdefault(row.item, []).append(s)
        picks.extend(pick(kind, by_item[idx]) for idx in chunk)
        if bar is not None:
            bar.update(len(chunk))

    chunk, rows = [], []
    for idx in items:
        chunk.append(idx)
        rows += item_rows(task, idx, tokenizer, context_len)
        if len(rows) >= chunk_rows:
            flush(chunk, rows)
            chunk, rows = [], []
    if chunk:
        flush(chunk, rows)
    n = len(items)
    acc = sum(is_correct(kind, examples[i], p) for i, p in zip(items, picks)) / n if n else float("nan")
    b = task["random_baseline"]
    se = standard_error(acc, n)
    return {"accuracy": acc, "stderr": se, "centred": centred(acc, b), "centred_stderr": se / (1 - b), "n": n,
            "seconds": time.perf_counter() - t0, "random_baseline": b, "icl_task_type": kind,
            "num_fewshot": task["num_fewshot"], "items": items, "picks": picks}


def evaluate_tasks(tasks: list[dict], tokenizer, score, context_len: int, max_per_task: int | None = None,
                   progress: bool = True) -> dict:
    """CORE over the given task dicts (load_task format). See evaluate_core for the result."""
    t0 = time.perf_counter()
    cap = None if max_per_task is None or max_per_task < 0 else max_per_task
    total = sum(len(t["examples"]) if cap is None else min(cap, len(t["examples"])) for t in tasks)
    per_task, capped = {}, False
    with tqdm(total=total, unit="item", desc="CORE", disable=not progress) as bar:
        for task in tasks:
            bar.set_description(task["label"])
            per_task[task["label"]] = evaluate_task(task, tokenizer, score, context_len, cap, bar=bar)
            capped |= per_task[task["label"]]["n"] < len(task["examples"])
    if per_task:
        core, core_se = mean_with_error([r["centred"] for r in per_task.values()],
                                        [r["centred_stderr"] for r in per_task.values()])
    else:
        core = core_se = float("nan")
    results = {"core": core, "core_stderr": core_se, "present": len(per_task), "total": len(CORE_LABELS),
               "missing": [label for label in CORE_LABELS if label not in per_task],
               "max_per_task": cap if capped else None, "seconds": time.perf_counter() - t0, "tasks": per_task}
    results["line"] = format_core(results)
    return results


def resolve_tasks(names: list[str] | None, bundle_dir=None) -> list[str] | None:
    """Check task names against the bundle's manifest; None = all. Unknown names: one UserError line."""
    if not names:
        return None
    present = [t["label"] for t in load_manifest(bundle_dir)["tasks"] if t["present"]]
    unknown = [n for n in names if n not in present]
    if unknown:
        absent = [n for n in unknown if n in CORE_LABELS]
        note = f" ({', '.join(absent)}: CORE tasks missing from this bundle)" if absent else ""
        raise UserError(f"unknown task {', '.join(map(repr, unknown))}{note}; the bundle has: {', '.join(present)}")
    return list(dict.fromkeys(names))


def evaluate_core(model, tokenizer, device, dtype: torch.dtype, max_per_task: int | None = None,
                  tasks: list[str] | None = None, batch_size: int = BATCH_SIZE, bundle_dir=None,
                  progress: bool = True, batch_tokens: int = BATCH_TOKENS) -> dict:
    """The CORE metric of a model on the bundle's tasks (all present, or the labels in `tasks`).

    model: a GPT (anything whose forward ends in .lm_head and that has .config.sequence_len), in eval mode, not
    compiled or DDP-wrapped; dtype: the autocast dtype (torch.float32 = none). max_per_task: a fixed seeded subset
    of at most that many items per task (None or -1 = all). bundle_dir: default eval_bundle.default_bundle_dir().
    Returns {core, core_stderr, present, total (22), missing (labels), max_per_task (None if no task was cut),
    seconds, line (format_core), tasks: {label: {accuracy, stderr, centred, centred_stderr, n, seconds, ...}}}.
    """
    labels = resolve_tasks(tasks, bundle_dir)
    chosen = load_core_tasks(bundle_dir) if labels is None else [load_task(label, bundle_dir) for label in labels]
    score = lambda rows: score_rows(model, rows, device, dtype, batch_size, batch_tokens)   # noqa: E731
    return evaluate_tasks(chosen, tokenizer, score, model.config.sequence_len, max_per_task, progress)


# -----------------------------------------------------------------------------
# Reporting: the same CORE line everywhere

def core_label(results: dict) -> str:
    """"CORE" for all 22 tasks, else "CORE (k of 22 tasks)"."""
    if results["present"] == results["total"]:
        return "CORE"
    return f"CORE ({results['present']} of {results['total']} tasks)"


def format_core(results: dict) -> str:
    """e.g. "CORE (20 of 22 tasks): 0.1234 ± 0.0056 [missing: winograd, agi_eval_lsat_ar; at most 100 items per
    task]". Every caller (base_eval, base_train, reports) prints this line."""
    notes = []
    if results["missing"]:
        notes.append(f"missing: {', '.join(results['missing'])}")
    if results.get("max_per_task"):
        notes.append(f"at most {results['max_per_task']} items per task")
    line = f"{core_label(results)}: {results['core']:.4f} ± {results['core_stderr']:.4f}"
    return line + (f" [{'; '.join(notes)}]" if notes else "")


def format_table(results: dict) -> str:
    """Per-task markdown table, then the CORE line."""
    lines = ["| task | accuracy | ± stderr | centred | n | seconds |", "|---|---:|---:|---:|---:|---:|"]
    for label, r in results["tasks"].items():
        lines.append(f"| {label} | {r['accuracy']:.4f} | {r['stderr']:.4f} | {r['centred']:.4f} | {r['n']} "
                     f"| {r['seconds']:.1f} |")
    return "\n".join(lines + ["", format_core(results)])
