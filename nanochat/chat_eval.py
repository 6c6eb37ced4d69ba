"""
Chat-model evaluation: multiple-choice tasks scored by the letter the model ranks highest, generative tasks by
sampling a reply and checking it, and ChatCORE, the mean centred accuracy over the tasks run.

The command line is scripts/chat_eval.py (`python -m scripts.chat_eval -i sft -a ARC-Easy`); in code, e.g. a
training script checking itself every so often:

    from nanochat.chat_eval import evaluate
    results = evaluate(engine, ["ARC-Easy", "GSM8K"], max_problems=50)   # names or Task objects
    results["tasks"]["ARC-Easy"]["accuracy"], results["chatcore"]["label"], results["chatcore"]["value"]

    run_categorical(model, tokenizer, task, batch_size=8)    # -> TaskResult of one multiple-choice task
    run_generative(engine, task, num_samples=1)              # -> TaskResult of one generative task

How each kind is scored:
- categorical (ARC-Easy, ARC-Challenge, MMLU, Wiki): the prompt is the chat up to <|assistant_start|>. Prompts go
  through the model in batches (sorted by length, right-padded: attention is causal, so padding never reaches a
  prompt's last real position). At that position only the logits of the question's own letters are compared, and the
  highest one is the answer. Random baseline: 1 / number of letters, averaged over the questions.
- generative (GSM8K, HumanEval, SpellingBee, Countries): the engine samples a reply (calculator tool calls are run
  as in chat) and task.evaluate(conversation, reply) checks it. With num_samples k a problem passes if any of its k
  samples passes (pass@k). Random baseline: 0.
Each accuracy a on n problems has the binomial standard error sqrt(a (1 - a) / n); centred = (a - b) / (1 - b).
A max_problems cap keeps a fixed seeded subset (core_eval.item_indices, as CORE's --max-per-task): the same problems
in every run, and not the first N (MMLU is sorted by subject).

Tests: pytest tests/test_chat_eval.py -q
"""

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from nanochat.core_eval import (BATCH_TOKENS, SUBSET_SEED, centred, continuation_logits, item_indices,
                                length_batches, mean_with_error, standard_error)
from nanochat.engine import fit_conversation
from nanochat.execution import SandboxCheck, check_sandbox

SPELLING_BEE_SIZE = 256     # SpellingBee and Arithmetic generate their questions; this many are scored
ARITHMETIC_SIZE = 256


def _arc(subset: str):
    from tasks.arc import ARC
    return ARC(subset, ARC.eval_split)


def _mmlu():
    from tasks.mmlu import MMLU
    return MMLU(MMLU.eval_split)


def _gsm8k():
    from tasks.gsm8k import GSM8K
    return GSM8K(GSM8K.eval_split)


def _humaneval():
    from tasks.humaneval import HumanEval
    return HumanEval(HumanEval.eval_split)


def _spelling_bee():
    from tasks.spellingbee import SpellingBee
    return SpellingBee(SpellingBee.eval_split, size=SPELLING_BEE_SIZE)


def _arithmetic(large_numbers: bool = False):
    from tasks.arithmetic import LARGE_NUMBERS_SCALE, ArithmeticProblems
    return ArithmeticProblems(ArithmeticProblems.eval_split, size=ARITHMETIC_SIZE,
                              scale=LARGE_NUMBERS_SCALE if large_numbers else 1)


def _countries(trained: bool = False):
    from tasks.knowledge import CountryFacts
    return CountryFacts(CountryFacts.eval_split, trained=trained)


def _wiki(trained: bool = False):
    from tasks.knowledge import WikiChoice
    return WikiChoice(WikiChoice.eval_split, trained=trained)


# Every task, each built on its evaluated split (tasks are imported only when used: MMLU takes seconds). ChatCORE
# averages the first six, as public nanochat's; Arithmetic (generated word problems with the calculator, as mid/SFT
# train on) and Arithmetic-x3 (the same with numbers up to 3x larger, what chat_rl trains on) are reported beside it,
# and so is knowledge (tasks/knowledge.py): Countries and Wiki ask about countries and Wikipedia articles held out of
# mid/SFT's knowledge data, Countries-trained and Wiki-trained about trained-on ones (what is memorised).
TASKS = {
    "ARC-Easy": lambda: _arc("ARC-Easy"),
    "ARC-Challenge": lambda: _arc("ARC-Challenge"),
    "MMLU": _mmlu,
    "GSM8K": _gsm8k,
    "HumanEval": _humaneval,
    "SpellingBee": _spelling_bee,
    "Arithmetic": _arithmetic,
    "Arithmetic-x3": lambda: _arithmetic(large_numbers=True),
    "Countries": _countries,
    "Countries-trained": lambda: _countries(trained=True),
    "Wiki": _wiki,
    "Wiki-trained": lambda: _wiki(trained=True),
}
CHATCORE_TASKS = ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee"]


def resolve_task_names(spec: str | list[str] | None) -> list[str]:
    """'ARC-Easy,gsm8k' or a list of names -> canonical names (case-insensitive, duplicates dropped); None or
    'all' -> every task. Raises ValueError naming the valid ones."""
    if spec is None or spec == "all":
        return list(TASKS)
    wanted = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    by_lower = {name.lower(): name for name in TASKS}
    unknown = [s for s in wanted if s.lower() not in by_lower]
    if unknown or not wanted:
        raise ValueError(f"unknown task {', '.join(map(repr, unknown)) or '(none given)'}: "
                         f"use one or more of {', '.join(TASKS)}, comma-separated, or all")
    return list(dict.fromkeys(by_lower[s.lower()] for s in wanted))


def _progress(total: int, name: str, unit: str, show: bool) -> tqdm:
    """A progress bar on a terminal (none when stderr is a file or a pipe, or show is False)."""
    return tqdm(total=total, desc=name, unit=unit, disable=None if show else True, leave=False)


# -----------------------------------------------------------------------------
# Results

@dataclass
class TaskResult:
    """One task's outcome per problem (passed or not) and what is derived from it."""
    name: str
    eval_type: str                      # "categorical" or "generative"
    outcomes: list[bool]
    baseline: float                     # the accuracy of random guessing
    seconds: float
    answers: list = field(default_factory=list)   # per problem: the letter picked / the first sample's reply
    num_samples: int = 1                # generative: samples per problem (pass@k with k = num_samples)
    samples_passed: list[int] = field(default_factory=list)   # generative: how many of the k samples passed
    truncated: int = 0                  # prompts longer than the model's context, cut to fit
    sandbox: SandboxCheck | None = None  # tasks that run code: the isolation the code ran under

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @property
    def accuracy(self) -> float:
        return sum(self.outcomes) / self.n if self.n else float("nan")

    @property
    def stderr(self) -> float:
        return standard_error(self.accuracy, self.n)

    @property
    def centred(self) -> float:
        return centred(self.accuracy, self.baseline)

    @property
    def centred_stderr(self) -> float:
        return self.stderr / (1 - self.baseline)

    @property
    def metric(self) -> str:
        return f"pass@{self.num_samples}" if self.num_samples > 1 else "accuracy"

    @property
    def sample_accuracy(self) -> tuple[float, float]:
        """pass@1 estimated from the k samples per problem, and its standard error: problems are the independent
        units (a problem's samples are correlated), so the error comes from the spread of per-problem pass rates."""
        rates = [passed / self.num_samples for passed in self.samples_passed]
        mean = sum(rates) / len(rates)
        var = sum((r - mean) ** 2 for r in rates) / max(1, len(rates) - 1)
        return mean, math.sqrt(var / len(rates))

    def summary(self) -> dict:
        out = {"eval_type": self.eval_type, "metric": self.metric, "accuracy": self.accuracy, "stderr": self.stderr,
               "centred": self.centred, "centred_stderr": self.centred_stderr, "baseline": self.baseline,
               "n": self.n, "seconds": round(self.seconds, 2), "truncated_prompts": self.truncated}
        if self.num_samples > 1 and self.n:   # pass@1 as well, from the same k samples
            mean, err = self.sample_accuracy
            out.update(num_samples=self.num_samples, sample_accuracy=mean, sample_accuracy_stderr=err)
        if self.sandbox:
            out["sandbox"] = {"layers": list(self.sandbox.layers), "weak": self.sandbox.weak,
                              "missing": self.sandbox.missing}
            if self.sandbox.weak:
                out["note"] = self.sandbox.note()
        return out

    def line(self) -> str:
        pass_at_1 = ("   pass@1 {:.4f} ± {:.4f}".format(*self.sample_accuracy)
                     if self.num_samples > 1 and self.n else "")
        return (f"{self.name:<17} {self.metric} {self.accuracy:.4f} ± {self.stderr:.4f}{pass_at_1}   centred "
                f"{self.centred:+.4f} ± {self.centred_stderr:.4f}   baseline {self.baseline:.3f}   n {self.n}   "
                f"{self.seconds:.1f} s" + (f"   ({self.truncated} prompts cut to fit the context)"
                                           if self.truncated else "")
                + (f"   [{self.sandbox.note()}]" if self.sandbox and self.sandbox.weak else ""))


def chatcore(results: list[TaskResult], task_names: list[str] | None = None) -> dict | None:
    """ChatCORE = mean centred accuracy over the ChatCORE tasks run, with its standard error, labelled with which
    tasks ("ChatCORE (3 of 6 tasks: ARC-Easy, MMLU, GSM8K)", or "ChatCORE (all 6 tasks)"); None if none was run."""
    task_names = CHATCORE_TASKS if task_names is None else task_names
    results = [r for r in results if r.name in task_names]
    names = [r.name for r in results]
    if not results:
        return None
    value, err = mean_with_error([r.centred for r in results], [r.centred_stderr for r in results])
    if set(names) == set(task_names):
        label = f"ChatCORE (all {len(task_names)} tasks)"
    else:
        label = f"ChatCORE ({len(names)} of {len(task_names)} tasks: {', '.join(names)})"
    out = {"label": label, "value": value, "stderr": err, "tasks": names,
           "missing": [t for t in task_names if t not in names]}
    notes = [f"{r.name}: {r.sandbox.note()}" for r in results if r.sandbox and r.sandbox.weak]
    if notes:   # a figure that includes a weak-sandbox score says so
        out["note"] = "; ".join(notes)
    return out


# -----------------------------------------------------------------------------
# Categorical tasks: argmax over the allowed letters

def letter_token_ids(tokenizer, letters: list[str]) -> list[int]:
    """The token of each letter as the assistant's reply renders it (the letter alone, right after
    <|assistant_start|>)."""
    ids = []
    for letter in letters:
        encoded = tokenizer.encode(letter)
        if len(encoded) != 1:
            raise ValueError(f"answer letter {letter!r} is {len(encoded)} tokens, not one: cannot score it")
        ids.append(encoded[0])
    return ids


@torch.inference_mode()
def score_letters(model, prompts: list[list[int]], allowed: list[list[int]], autocast=None) -> list[int]:
    """One forward pass over a batch of prompts; per prompt, the index into its `allowed` token ids of the highest
    logit at the prompt's last position (tokens outside `allowed` are never chosen). The lm_head runs at those
    positions only (core_eval.continuation_logits): (B, T, V) fp32 logits of long prompts would take gigabytes."""
    device = model.get_device()
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    ids = torch.zeros(len(prompts), int(lengths.max()), dtype=torch.long, device=device)   # pad after the end: unseen
    for row, prompt in enumerate(prompts):
        ids[row, :len(prompt)] = torch.tensor(prompt, dtype=torch.long)
    with autocast or nullcontext():
        logits = continuation_logits(model, ids, torch.arange(len(prompts), device=device), lengths - 1)
    return [int(row[torch.tensor(a, device=device)].argmax()) for row, a in zip(logits, allowed)]


def categorical_prompt(tokenizer, conversation: dict, context_len: int) -> tuple[list[int], bool]:
    """The chat up to <|assistant_start|>, and whether it had to be cut to fit the context (engine.fit_conversation:
    the start of an over-long question goes, the choices at its end stay)."""
    prompt = tokenizer.render_for_completion(conversation)
    if len(prompt) <= context_len:
        return prompt, False
    return fit_conversation(tokenizer, conversation, context_len)[0], True


def run_categorical(model, tokenizer, task, batch_size: int = 8, max_problems: int = -1, autocast=None,
                    progress: bool = True, batch_tokens: int = BATCH_TOKENS) -> TaskResult:
    """Score a multiple-choice task (conversations with "letters" and "answer"): argmax over the allowed letters.
    Prompts are sorted by length and batched by at most batch_size prompts and batch_tokens tokens (as CORE is)."""
    t0 = time.time()
    conversations = [task[i] for i in item_indices(len(task), max_problems)]
    if not conversations:
        raise ValueError(f"{task.name}: no problems to evaluate")
    fitted = [categorical_prompt(tokenizer, c, model.config.sequence_len) for c in conversations]
    prompts = [prompt for prompt, _ in fitted]
    allowed = [letter_token_ids(tokenizer, c["letters"]) for c in conversations]
    answers = [None] * len(prompts)
    with _progress(len(prompts), task.name, "q", progress) as bar:
        for batch in length_batches([len(p) for p in prompts], batch_size, batch_tokens):
            picks = score_letters(model, [prompts[j] for j in batch], [allowed[j] for j in batch], autocast)
            for j, pick in zip(batch, picks):
                answers[j] = conversations[j]["letters"][pick]
            bar.update(len(batch))
    outcomes = [a == c["answer"] for a, c in zip(answers, conversations)]
    baseline = sum(1 / len(c["letters"]) for c in conversations) / len(conversations)
    return TaskResult(task.name, "categorical", outcomes, baseline, time.time() - t0, answers,
                      truncated=sum(cut for _, cut in fitted))


# -----------------------------------------------------------------------------
# Generative tasks: sample, then task.evaluate

def run_generative(engine, task, num_samples: int = 1, max_new_tokens: int = 512, temperature: float = 0.0,
                   top_k: int | None = None, max_problems: int = -1, seed: int = 42,
                   progress: bool = True) -> TaskResult:
    """Sample num_samples replies per problem (one prefill, then k rows; problem i uses seed + i) and pass it if
    task.evaluate accepts any of them. The reply is everything generated, tool calls and their outputs included."""
    t0 = time.time()
    indices = item_indices(len(task), max_problems)
    if not indices:
        raise ValueError(f"{task.name}: no problems to evaluate")
    outcomes, answers, samples_passed, cut = [], [], [], 0
    with _progress(len(indices), task.name, "problem", progress) as bar:
        for i in indices:
            conversation = task[i]
            prompt, max_tokens, _ = engine.fit_prompt(conversation["messages"], max_new_tokens)
            cut += len(prompt) < len(engine.tokenizer.render_for_completion(conversation))
            rows, _ = engine.generate_batch(prompt, num_samples=num_samples, max_tokens=max_tokens,
                                            temperature=temperature, top_k=top_k, seed=seed + i)
            replies = [engine.tokenizer.decode(row[len(prompt):]) for row in rows]
            passed = sum(bool(task.evaluate(conversation, reply)) for reply in replies)
            outcomes.append(passed > 0)
            samples_passed.append(passed)
            answers.append(replies[0])
            bar.update(1)
            bar.set_postfix(acc=f"{sum(outcomes) / len(outcomes):.3f}")
    return TaskResult(task.name, "generative", outcomes, 0.0, time.time() - t0, answers, num_samples, samples_passed,
                      cut)


# -----------------------------------------------------------------------------
# Several tasks and ChatCORE

def evaluate(engine, tasks=None, max_problems: int = -1, batch_size: int = 8, num_samples: int = 1,
             max_new_tokens: int = 512, temperature: float = 0.0, top_k: int | None = None, seed: int = 42,
             progress: bool = True, log=print) -> dict:
    """Run tasks (names of TASKS, Task objects, or None = all of TASKS) and compute ChatCORE over them (None when
    no ChatCORE task was run).

    Categorical tasks use engine.model and engine.autocast, generative ones the engine. `log` gets one line per task
    as it finishes and the ChatCORE line (None: silent). Returns {"tasks": {name: summary}, "chatcore": {...},
    "settings": {...}, "results": [TaskResult, ...]} ("results" holds the per-problem answers; it is not JSON).
    A task that runs the model's code (HumanEval) first checks the sandbox: execution.SandboxRefused if this
    machine cannot isolate the code; under the weak opt-in, every line and summary carrying its figure says so.
    """
    if tasks is None or isinstance(tasks, str):
        tasks = resolve_task_names(tasks)
    tasks = [TASKS[resolve_task_names([t])[0]]() if isinstance(t, str) else t for t in tasks]
    # before any task runs: an unsafe machine refuses now, not after the other tasks' minutes
    sandbox = check_sandbox() if any(task.runs_code for task in tasks) else None
    results = []
    for task in tasks:
        if task.runs_code and log:
            log(f"{task.name} runs the model's code; {sandbox.line()}")
        if task.eval_type == "categorical":
            result = run_categorical(engine.model, engine.tokenizer, task, batch_size, max_problems,
                                     engine.autocast, progress)
        elif task.eval_type == "generative":
            result = run_generative(engine, task, num_samples, max_new_tokens, temperature, top_k, max_problems,
                                    seed, progress)
        else:
            raise ValueError(f"{task.name}: unknown eval_type {task.eval_type!r} (categorical or generative)")
        result.sandbox = sandbox if task.runs_code else None
        results.append(result)
        if log:
            log(result.line())
    score = chatcore(results)
    if log and score:
        log(f"{score['label']}: {score['value']:.4f} ± {score['stderr']:.4f}"
            + (f"   [{score['note']}]" if score.get("note") else ""))
    settings = {"max_problems": max_problems, "subset_seed": SUBSET_SEED, "batch_size": batch_size,
                "num_samples": num_samples, "max_new_tokens": max_new_tokens, "temperature": temperature,
                "top_k": top_k, "seed": seed}
    return {"tasks": {r.name: r.summary() for r in results}, "chatcore": score, "settings": settings,
            "results": results}
