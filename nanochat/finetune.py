"""
What mid_train and chat_sft share: start from an earlier stage's checkpoint, render a conversation mixture
(nanochat/chat_data.py), and train it through the loop base_train uses (nanochat/train.py): the same train
step, schedule, time budget, Ctrl-C save, resume, checkpoints, MFU/ETA log and wandb.

The stages differ only in their data and a few settings, which each script passes in:

    args = parse_args(...)                            # add_chat_stage_args(p, stage defaults) + the stage's own
    run_chat_stage(args, "mid", train_mixture, val_mixture, packed=True, supervise="all",
                   rows_per_step=lambda T: args.total_batch_size // T, warmdown_ratio=args.warmdown_ratio)

mid_train packs conversations into full rows and learns every token (the chat format itself, user turns
included); chat_sft puts one conversation per row and learns only what the assistant writes.
Checkpoints: <base>/<stage dir>/<model tag of the start checkpoint>/, e.g. mid_checkpoints/d4/.
"""

import argparse
import os
import time
from dataclasses import asdict

import torch

from nanochat import cli, report
from nanochat.chat_data import ChatData
from nanochat.checkpoint_manager import STAGE_DIRS, find_largest_model, list_steps, load_model, locate_checkpoint
from nanochat.common import (UserError, autocast_ctx, compute_cleanup, compute_init, dtype_reason, get_base_dir,
                             get_wandb, peak_rss_bytes, print0)
from nanochat.engine import Engine
from nanochat.gpt import measure_matmul_flops
from nanochat.loss_eval import evaluate_bpb
from nanochat.tokenizer import get_token_bytes
from nanochat.train import (LoopState, RunLength, TrainingRun, save_training_checkpoint, start_or_resume,
                            train_loop)

# Greedy replies printed at every sample point: the format, identity, a fact, spelling and a tool call.
SAMPLE_QUESTIONS = ["Hello! Who are you?", "What is the capital of France?", "How many r are in strawberry?",
                    "Mia buys 3 packs of cards with 12 cards in each pack, then gives away 5. How many cards does "
                    "Mia have left?"]


def add_chat_stage_args(p, source: str, init_lr_frac: float, compile_default: str, eval_every: int,
                        chat_eval_every: int):
    """The flags every chat stage has; the defaults that differ between stages are arguments."""
    g = p.add_argument_group("start checkpoint")
    g.add_argument("--source", choices=list(STAGE_DIRS), default=source, help="stage to start from")
    g.add_argument("--model-tag", default=None, help="model folder of the start stage, e.g. d4 (default: the deepest)")
    g.add_argument("--step", type=cli.nonneg_int, default=None, help="start checkpoint step (default: the latest)")
    g = p.add_argument_group("batch and length")
    g.add_argument("--max-seq-len", type=cli.int_or_off, default=-1,
                   help="tokens per row (-1 = the model's context); longer conversations are truncated and counted")
    g.add_argument("--device-batch-size", type=cli.positive_int, default=8, help="rows per forward/backward")
    g.add_argument("--num-epochs", type=cli.positive_float, default=1.0, help="passes over the training mixture")
    g.add_argument("--num-iterations", type=cli.int_or_off, default=-1,
                   help="optimizer steps (-1 = as many as --num-epochs takes)")
    g.add_argument("--time-budget", type=cli.float_or_off, default=-1,
                   help="train for this many minutes of step time (evals and the compile excluded); the LR "
                        "schedule follows the clock; overrides the length flags above (-1 = off)")
    cli.add_learning_rate_args(p, init_lr_frac)
    g = p.add_argument_group("evaluation, logging, saving")
    g.add_argument("--eval-every", type=cli.int_or_off, default=eval_every,
                   help="val bpb every N steps (and at the end; -1 = end only)")
    g.add_argument("--eval-tokens", type=cli.positive_int, default=65536, help="validation tokens per evaluation")
    g.add_argument("--chat-eval-every", type=cli.int_or_off, default=chat_eval_every,
                   help="chat_eval of --chat-eval-tasks every N steps and at the end (-1 = off)")
    g.add_argument("--chat-eval-tasks", type=task_names, default="ARC-Easy,SpellingBee,Arithmetic",
                   help="tasks of the periodic chat_eval (comma-separated names of scripts.chat_eval)")
    g.add_argument("--chat-eval-max-problems", type=cli.int_or_off, default=32,
                   help="problems per task in the periodic chat_eval: a fixed seeded subset (-1 = all)")
    g.add_argument("--sample-every", type=cli.int_or_off, default=-1,
                   help="print greedy replies every N steps (-1 = end only)")
    g.add_argument("--save-every", type=cli.int_or_off, default=-1, help="checkpoint every N steps (-1 = end only)")
    g.add_argument("--resume", default="", help="resume this stage from 'latest' or a step number")
    g.add_argument("--mixture-scale", type=cli.positive_float, default=1.0,
                   help="multiply every source's number of examples (capped by what a source has)")
    g.add_argument("--sharegpt", type=cli.nonneg_int, default=0,
                   help="add N ShareGPT conversations to the training mixture (opt-in: that data states no "
                        "license; 0 = none)")
    g.add_argument("--run", default="dummy", help="wandb run name ('dummy' = no wandb)")
    g = p.add_argument_group("system")
    g.add_argument("--compile", default=compile_default, choices=["auto", "on", "off"],
                   help="torch.compile the model (auto = on, except CPU runs too short to repay the compile time)")
    g.add_argument("--seed", type=int, default=42, help="random seed (the mixture's order too)")
    g.add_argument("--device-type", default=None, choices=["cuda", "cpu", "mps"],
                   help="cuda, cpu or mps (default: cuda if a GPU is visible, else cpu)")


STAGE_SCRIPTS = {"base": "scripts.base_train", "mid": "scripts.mid_train", "sft": "scripts.chat_sft",
                 "rl": "scripts.chat_rl"}


def list_steps_of(source: str, model_tag: str | None) -> list[int]:
    """The saved steps of a stage's model (the deepest one without a tag); [] when there is none."""
    stage_dir = os.path.join(get_base_dir(), STAGE_DIRS[source])
    if not os.path.isdir(stage_dir) or not os.listdir(stage_dir):
        return []
    return list_steps(os.path.join(stage_dir, model_tag or find_largest_model(stage_dir)))


def task_names(spec: str) -> list[str]:
    """--chat-eval-tasks: comma-separated chat_eval task names, checked at parse time."""
    from nanochat.chat_eval import resolve_task_names
    try:
        return resolve_task_names(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def chat_eval_tasks(names: list[str]):
    """The periodic chat_eval's Task objects, built once (MMLU takes seconds to load). A task that runs the
    model's code checks the sandbox now, so an unsafe machine stops the stage before it trains."""
    from nanochat.chat_eval import TASKS
    from nanochat.execution import SandboxRefused, check_sandbox
    tasks = [TASKS[name]() for name in names]
    if any(task.runs_code for task in tasks):
        try:
            print(check_sandbox().line())
        except SandboxRefused as e:
            raise UserError(str(e)) from None
    return tasks


def run_chat_stage(args, stage: str, train_task, val_task, packed: bool, supervise: str, rows_per_step,
                   warmdown_ratio: float, eval_tasks=None) -> dict:
    """Train stage `stage` ("mid", "sft") on train_task from args.source's checkpoint; returns the results.
    rows_per_step: rows per optimizer step, or a function of the row length T (known once the model is loaded)."""
    t_start = time.time()
    user_config = vars(args).copy()

    # -------------------------------------------------------------------------
    # Compute and the start model
    compute = compute_init(args.device_type, seed=args.seed)
    device, dtype = compute.device, compute.dtype
    if not list_steps_of(args.source, args.model_tag):
        raise UserError(f"no {args.source} checkpoint{' ' + args.model_tag if args.model_tag else ''} under "
                        f"{get_base_dir()}: run `python -m {STAGE_SCRIPTS[args.source]}` first, or start from "
                        "another stage with --source")
    source, source_dir, source_step = locate_checkpoint(args.source, args.model_tag, args.step)
    model, tokenizer, _ = load_model(source, device, phase="train", model_tag=os.path.basename(source_dir),
                                     step=source_step)
    config = model.config
    token_bytes = get_token_bytes(device)
    peak_flops = measure_matmul_flops(device, dtype)
    print0(f"compute: {dtype_reason(device)}; measured {str(dtype)[6:]} matmul peak {peak_flops / 1e9:.0f} GFLOP/s")
    print0(f"start: {source} step {source_step} of {source_dir}; model {asdict(config)}")
    T = config.sequence_len if args.max_seq_len == -1 else args.max_seq_len
    if T > config.sequence_len:
        raise UserError(f"--max-seq-len {T} is longer than the model's context ({config.sequence_len})")

    # -------------------------------------------------------------------------
    # Data: every conversation rendered once
    data = ChatData(tokenizer, train_task, T, supervise, seed=args.seed)
    val_data = ChatData(tokenizer, val_task, T, supervise, seed=args.seed)
    print0(f"data: {len(data):,} training conversations, {data.num_tokens:,} tokens ({data.truncated:,} longer "
           f"than {T + 1} tokens, truncated); {len(val_data):,} validation conversations ({val_data.truncated:,} "
           f"truncated); {'packed rows' if packed else 'one conversation per row'}, loss on "
           f"{'every token' if supervise == 'all' else 'the assistant tokens'}")

    # -------------------------------------------------------------------------
    # Batch and length
    B = args.device_batch_size
    rows_per_step = rows_per_step(T) if callable(rows_per_step) else rows_per_step
    rows_per_fwdbwd = B * compute.world_size
    if rows_per_step % rows_per_fwdbwd:
        raise UserError(f"{rows_per_step} rows per step is not a multiple of device batch x processes "
                        f"= {B} x {compute.world_size}: change --device-batch-size")
    grad_accum = rows_per_step // rows_per_fwdbwd
    epoch_rows = len(data.plan(0, packed))
    epoch_steps = max(1, round(args.num_epochs * epoch_rows / rows_per_step))
    length = RunLength.from_flags(args.time_budget, args.num_iterations if args.num_iterations > 0 else epoch_steps)
    if args.num_iterations <= 0 and args.time_budget <= 0:
        length.description = f"{epoch_steps} steps = {args.num_epochs:g} epoch(s) of {epoch_rows:,} rows"
    print0(f"batch: {rows_per_step} rows/step = {B} x {compute.world_size} processes x {grad_accum} accumulation "
           f"(rows of up to {T} tokens); length: {length.description}")

    # -------------------------------------------------------------------------
    # Optimizers and loop state (fresh, or resumed from this stage's checkpoint)
    frac = args.init_lr_frac
    optimizers = model.setup_optimizers(unembedding_lr=args.unembedding_lr * frac,
                                        embedding_lr=args.embedding_lr * frac, matrix_lr=args.matrix_lr * frac)
    checkpoint_dir = os.path.join(get_base_dir(), STAGE_DIRS[stage], os.path.basename(source_dir))
    schedule = {"warmup_ratio": 0.0, "warmdown_ratio": warmdown_ratio}
    loop, train_model = start_or_resume(checkpoint_dir, args.resume, model, optimizers, length, args.compile,
                                        asdict(config), compute, schedule)

    # -------------------------------------------------------------------------
    # Batches, evaluation, samples, saving
    batches = data.batches(B, packed, device, loop.loader_state, compute.rank, compute.world_size)
    val_rows = len(val_data.plan(0, packed))
    eval_steps = max(1, min(args.eval_tokens // (B * T * compute.world_size), val_rows // rows_per_fwdbwd))
    engine = Engine(model, tokenizer, autocast=autocast_ctx(device, dtype))

    def evaluate() -> float:
        return evaluate_bpb(model, val_data.batches(B, packed, device, rank=compute.rank,
                                                    world_size=compute.world_size), eval_steps, token_bytes, dtype)

    def sample():
        for question in SAMPLE_QUESTIONS:
            prompt, max_tokens, _ = engine.fit_prompt([{"role": "user", "content": question}], 64)
            rows, _ = engine.generate_batch(prompt, max_tokens=max_tokens, temperature=0.0)
            print0(f"sample: {question!r} -> {tokenizer.decode(rows[0][len(prompt):])!r}")

    def chat_metric() -> dict:
        from nanochat.chat_eval import evaluate
        results = evaluate(engine, eval_tasks, max_problems=args.chat_eval_max_problems, max_new_tokens=256,
                           progress=False, log=None)
        accuracies = ", ".join(f"{name} {r['accuracy']:.3f}" for name, r in results["tasks"].items())
        score = results["chatcore"]
        value = score["value"] if score else sum(r["accuracy"] for r in results["tasks"].values()) / len(eval_tasks)
        label = score["label"] if score else "mean accuracy"
        return {"name": "chat_eval", "value": value, "line": f"chat_eval {accuracies} | {label} {value:.4f}"}

    def save(loop: LoopState, reason: str):
        meta = {"model_config": asdict(config), "user_config": user_config, "num_iterations": length.num_iterations,
                "dtype": str(dtype), "start": {"source": source, "dir": source_dir, "step": source_step},
                "conversations": len(data), "truncated": data.truncated, "epoch_rows": epoch_rows}
        save_training_checkpoint(checkpoint_dir, loop, model, optimizers, compute, meta, reason)

    # -------------------------------------------------------------------------
    # Training loop
    run = TrainingRun(model=model, train_model=train_model, optimizers=optimizers, batches=batches,
                      grad_accum=grad_accum, length=length, compute=compute,
                      flops_per_token=model.estimate_flops(), peak_flops=peak_flops, evaluate=evaluate, save=save,
                      sample=sample, task_metric=chat_metric if eval_tasks and args.chat_eval_every > 0 else None,
                      eval_every=args.eval_every, sample_every=args.sample_every,
                      task_metric_every=args.chat_eval_every, save_every=args.save_every,
                      schedule=schedule,
                      wandb_run=get_wandb(args.run, f"nanochat-{stage}", user_config))
    losses = train_loop(run, loop)
    print0(f"done: {loop.step} steps, {loop.train_time / 60:.2f} min of training, val bpb {loop.val_bpb}, "
           f"peak RSS {peak_rss_bytes() / 2**30:.2f} GiB; checkpoints in {checkpoint_dir}")
    run.wandb_run.finish()
    report.record({"mid": "mid_train", "sft": "chat_sft"}[stage], settings=user_config,
                  seconds=time.time() - t_start, history=run.history,
                  metrics={"val_bpb": loop.val_bpb, "steps": loop.step, "train_minutes": loop.train_time / 60,
                           "conversations": len(data), "truncated": data.truncated, "chat_eval": loop.task_metric})
    compute_cleanup()
    return {"step": loop.step, "val_bpb": loop.val_bpb, "chat_eval": loop.task_metric, "train_time": loop.train_time,
            "losses": losses, "loader_state": loop.loader_state, "checkpoint_dir": checkpoint_dir,
            "truncated": data.truncated}
