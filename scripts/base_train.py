"""
Pretrain the base model: next-token prediction on streamed text, Muon + AdamW, periodic val bits-per-byte,
samples and checkpoints, resumable.

CPU (single process, every core), e.g. a 14-minute depth-4 model on the offline text:
    python -m scripts.base_train --depth 4 --time-budget 14
A .txt file of your own (streamed; the data layer holds out its tail for validation):
    python -m scripts.base_train --depth 4 --data my_corpus.txt --num-iterations 500
Resume the latest checkpoint of the same depth (or --resume 1200 for a given step):
    python -m scripts.base_train --depth 4 --time-budget 14 --resume latest
One GPU: python -m scripts.base_train --depth 20 --device-batch-size 32 --device-type cuda
Every GPU of one machine (data parallel, DDP over NCCL; the same total batch, less gradient accumulation):
    torchrun --standalone --nproc_per_node=8 -m scripts.base_train --depth 20 --device-batch-size 32
(torchrun on a CPU is refused: processes would only split the same cores.)

Checkpoints: <base>/base_checkpoints/d<depth>/{model,optim}_<step>.pt + meta_<step>.json. Ctrl-C saves one and exits.
Under torchrun: each rank reads every world_size-th document; gradients are averaged once per optimizer step and
every rank then runs the full Muon/AdamW step itself (no optimizer sharding: simpler, more memory per GPU); the
ranks agree on when to stop (Ctrl-C, time budget); rank 0 writes checkpoints, whose meta holds every rank's
data-loader position, so --resume needs the same number of processes.
"""

import argparse
import contextlib
import math
import os
import shutil
import signal
import time
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from nanochat.checkpoint_manager import STAGE_DIRS, find_last_step, load_checkpoint, save_checkpoint
from nanochat.common import (UserError, autocast_ctx, compute_cleanup, compute_dtype, compute_init, dtype_reason,
                             get_base_dir, get_wandb, peak_rss_bytes, print0, synchronize)
from nanochat.dataloader import tokenizing_distributed_data_loader
from nanochat.gpt import build_model, config_from_depth, measure_matmul_flops
from nanochat.loss_eval import evaluate_bpb
from nanochat.optim import set_schedule
from nanochat.tokenizer import get_token_bytes, get_tokenizer

SAMPLE_PROMPTS = ["The capital of France is", "The meaning of the word", "It is a truth universally acknowledged",
                  "In Python, a list is"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Pretrain a nanochat base model", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # model
    p.add_argument("--depth", type=int, default=4, help="transformer layers; width = 64 * depth")
    p.add_argument("--head-dim", type=int, default=128, help="attention head dimension")
    p.add_argument("--n-kv-head", type=int, default=-1, help="key/value heads for GQA/MQA (-1 = same as query heads)")
    p.add_argument("--max-seq-len", type=int, default=512, help="context length in tokens")
    # batch and length
    p.add_argument("--device-batch-size", type=int, default=8, help="sequences per forward/backward")
    p.add_argument("--total-batch-size", type=int, default=8192,
                   help="tokens per optimizer step (gradient accumulation fills it; -1 = one device batch)")
    p.add_argument("--num-iterations", type=int, default=-1, help="optimizer steps (-1 = derive from the next flags)")
    p.add_argument("--target-flops", type=float, default=-1, help="train for this many FLOPs (-1 = off)")
    p.add_argument("--target-param-data-ratio", type=float, default=20,
                   help="train on this many tokens per parameter (Chinchilla = 20; -1 = off)")
    p.add_argument("--time-budget", type=float, default=-1,
                   help="train for this many minutes of step time (evals excluded); the LR schedule follows the "
                        "clock; overrides the length flags above (-1 = off)")
    # optimization
    p.add_argument("--matrix-lr", type=float, default=0.02, help="Muon learning rate (block matrices)")
    p.add_argument("--embedding-lr", type=float, default=0.2, help="AdamW learning rate of the embedding")
    p.add_argument("--unembedding-lr", type=float, default=0.004, help="AdamW learning rate of the lm_head")
    p.add_argument("--warmup-ratio", type=float, default=0.0, help="share of the run with linear LR warmup")
    p.add_argument("--warmdown-ratio", type=float, default=0.2, help="share of the run with linear LR decay to 0")
    # evaluation, logging, saving
    p.add_argument("--eval-every", type=int, default=250, help="val bpb every N steps (and at the end; -1 = end only)")
    p.add_argument("--eval-tokens", type=int, default=262144, help="validation tokens per bpb evaluation")
    p.add_argument("--core-metric-every", type=int, default=-1,
                   help="CORE metric every N steps (-1 = off; not available yet: use scripts.base_eval after training)")
    p.add_argument("--sample-every", type=int, default=-1, help="print greedy samples every N steps (-1 = end only)")
    p.add_argument("--save-every", type=int, default=-1, help="checkpoint every N steps (-1 = end only)")
    p.add_argument("--resume", default="", help="resume from 'latest' or a step number of this depth's checkpoints")
    p.add_argument("--model-tag", default="", help="checkpoint folder name (default d<depth>)")
    p.add_argument("--run", default="dummy", help="wandb run name ('dummy' = no wandb)")
    # system
    p.add_argument("--device-type", default="", help="cuda, cpu or mps (default: autodetect)")
    p.add_argument("--data", default="auto", help="text source: auto, hub, offline, or a .txt/.jsonl file or folder")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the model (auto = on, except CPU runs shorter than 5 minutes or 200 steps: a cold "
                        "compile takes 70-90 s on 2 cores, then steps are ~1.4x faster; see dev/bench_train.py)")
    p.add_argument("--seed", type=int, default=42, help="random seed")
    args = p.parse_args(argv)
    if args.core_metric_every > 0:
        print0("note: --core-metric-every is accepted but the CORE evaluator is not part of base_train yet; "
               "run `python -m scripts.base_eval` on the checkpoint")
    return args


# -----------------------------------------------------------------------------
# The pieces that differ under DDP (torchrun on GPUs), kept small so tests/test_ddp.py runs them on gloo

def wrap_data_parallel(train_model):
    """DDP around the (possibly compiled) model: it starts every rank from rank 0's weights and averages the
    gradients across ranks in backward (the lm_head's too: the fused loss returns it like any autograd op).
    Defaults otherwise: its per-forward buffer broadcast sends only the rotary tables (~10 MB at depth 20)."""
    return DDP(train_model)


def train_step(train_model, optimizers, batches, grad_accum: int, device, dtype):
    """One optimizer step over grad_accum micro-batches from `batches` (an iterator of (inputs, targets, state)).

    Under DDP the micro-batches before the last run inside no_sync(): their gradients only add up locally, and
    the last backward all-reduces the sum, so there is one all-reduce per optimizer step. Every rank then applies
    the same averaged gradient. Returns (mean loss over the micro-batches and the ranks, the last batch's state).
    """
    ddp = isinstance(train_model, DDP)
    loss_sum = torch.zeros((), device=device)
    state = None
    for micro in range(grad_accum):
        x, y, state = next(batches)
        local_only = ddp and micro < grad_accum - 1
        with train_model.no_sync() if local_only else contextlib.nullcontext():
            with autocast_ctx(device, dtype):
                loss = train_model(x, y)
            (loss / grad_accum).backward()
        loss_sum += loss.detach()
    for opt in optimizers:
        opt.step()
    train_model.zero_grad(set_to_none=True)
    world_size = 1
    if ddp:
        dist.all_reduce(loss_sum)              # a sum (gloo, used by the tests, has no average)
        world_size = dist.get_world_size()
    return loss_sum.item() / (grad_accum * world_size), state     # the one host sync of the step


def agree_across_ranks(stop: bool, train_time: float, device) -> tuple[bool, float]:
    """Every rank must decide alike whether to stop and see the same clock (the LR schedule and a time budget
    follow it): a rank that leaves the loop alone would leave the others waiting in their next all-reduce.
    Stop if any rank got Ctrl-C; the clock is the slowest rank's."""
    flags = torch.tensor([float(stop), train_time], dtype=torch.float64, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    stop_flag, train_time = flags.tolist()
    return bool(stop_flag), train_time


def gather_loader_states(loader_state, world_size: int):
    """What a checkpoint saves as loader_state: the state itself in one process (the original format), a list
    indexed by rank under DDP (each rank reads its own documents). A collective: every rank must call it."""
    if world_size == 1:
        return loader_state
    states = [None] * world_size
    dist.all_gather_object(states, loader_state)
    return states


def loader_state_for_rank(meta: dict, rank: int, world_size: int, where: str):
    """This rank's data-loader state from a checkpoint's meta, refusing a different number of processes."""
    saved = meta.get("world_size", 1)
    if saved != world_size:
        raise UserError(f"{where} was saved by {saved} process(es) but this run has {world_size}: each process "
                        f"resumes its own data position, so resume with {saved} (torchrun --nproc_per_node={saved}, "
                        "or no torchrun for 1)")
    return meta["loader_state"][rank] if world_size > 1 else meta["loader_state"]


def main(argv=None):
    args = parse_args(argv)
    user_config = vars(args).copy()

    # -------------------------------------------------------------------------
    # Compute
    ddp, rank, local_rank, world_size, device = compute_init(args.device_type, seed=args.seed)
    dtype = compute_dtype(device)
    master = rank == 0
    peak_flops = measure_matmul_flops(device, dtype)
    print0(f"compute: {dtype_reason(device)}; measured {str(dtype)[6:]} matmul peak {peak_flops / 1e9:.0f} GFLOP/s "
           f"on {torch.get_num_threads()} threads (the MFU denominator)")

    # -------------------------------------------------------------------------
    # Tokenizer and model
    tokenizer = get_tokenizer()
    token_bytes = get_token_bytes(device)
    vocab_size = tokenizer.get_vocab_size()
    try:
        config = config_from_depth(args.depth, vocab_size, args.max_seq_len, args.head_dim, args.n_kv_head)
    except ValueError as e:
        raise UserError(str(e))
    model = build_model(config, device)
    n_params = model.num_params()
    flops_per_token = model.estimate_flops()
    print0(f"model: {asdict(config)}")
    print0("parameters: " + ", ".join(f"{k} {v:,}" for k, v in n_params.items())
           + f"; {flops_per_token / 1e6:.1f} MFLOP/token")

    B, T = args.device_batch_size, args.max_seq_len
    tokens_per_fwdbwd = B * T * world_size
    total_batch = tokens_per_fwdbwd if args.total_batch_size == -1 else args.total_batch_size
    if total_batch % tokens_per_fwdbwd:
        raise UserError(f"--total-batch-size {total_batch} is not a multiple of device batch x seq len x processes "
                        f"= {B} x {T} x {world_size} = {tokens_per_fwdbwd}")
    grad_accum = total_batch // tokens_per_fwdbwd

    # Training length: a clock, or steps from iterations / FLOPs / tokens-per-parameter.
    time_budget = args.time_budget * 60 if args.time_budget > 0 else None
    if time_budget:
        num_iterations = None
        length = f"{args.time_budget:g} minutes of training steps"
    elif args.num_iterations > 0:
        num_iterations = args.num_iterations
        length = f"{num_iterations} steps (--num-iterations)"
    elif args.target_flops > 0:
        num_iterations = max(1, round(args.target_flops / (flops_per_token * total_batch)))
        length = f"{num_iterations} steps to reach {args.target_flops:.3g} FLOPs"
    elif args.target_param_data_ratio > 0:
        num_iterations = max(1, round(args.target_param_data_ratio * n_params["total"] / total_batch))
        length = f"{num_iterations} steps for {args.target_param_data_ratio:g} tokens per parameter"
    else:
        raise UserError("no training length: give --num-iterations, --target-flops, --target-param-data-ratio "
                        "or --time-budget")
    print0(f"batch: {total_batch:,} tokens/step = {B} x {T} x {world_size} processes x {grad_accum} accumulation; "
           f"length: {length}")

    # -------------------------------------------------------------------------
    # Optimizers, resume
    optimizers = model.setup_optimizers(unembedding_lr=args.unembedding_lr, embedding_lr=args.embedding_lr,
                                        matrix_lr=args.matrix_lr)
    model_tag = args.model_tag or f"d{args.depth}"
    checkpoint_dir = os.path.join(get_base_dir(), STAGE_DIRS["base"], model_tag)
    step, train_time, smooth_loss, loader_state, val_bpb = 0, 0.0, 0.0, None, None
    if args.resume:
        resume_step = find_last_step(checkpoint_dir) if args.resume == "latest" else int(args.resume)
        model_data, optim_data, meta = load_checkpoint(checkpoint_dir, resume_step, device, load_optimizer=True)
        if meta["model_config"] != asdict(config):
            raise UserError(f"{checkpoint_dir}/meta_{resume_step:06d}.json has model_config {meta['model_config']} "
                            f"but these flags build {asdict(config)}: resume with the same --depth/--head-dim/...")
        model.load_state_dict(model_data)
        for opt, state in zip(optimizers, optim_data):
            opt.load_state_dict(state)
        loop = meta["loop_state"]
        step, train_time, smooth_loss, val_bpb = loop["step"], loop["train_time"], loop["smooth_loss"], meta.get("val_bpb")
        loader_state = loader_state_for_rank(meta, rank, world_size, f"{checkpoint_dir}/meta_{resume_step:06d}.json")
        num_iterations = meta["num_iterations"] if not time_budget else None
        print0(f"resumed from step {step} of {checkpoint_dir} ({train_time / 60:.1f} min trained)")
        del model_data, optim_data

    compile_mode = args.compile
    if compile_mode == "auto":
        # On 2 CPU cores a cold compile takes 70-90 s at depth 4 and then steps run ~1.4x faster: it pays back
        # after ~150-200 steps, so only runs shorter than ~5 minutes / 200 steps stay eager (dev/bench_train.py).
        short_cpu_run = device.type == "cpu" and (time_budget < 5 * 60 if time_budget else num_iterations - step < 200)
        compile_mode = "off" if short_cpu_run else "on"
    if compile_mode == "on" and device.type == "cpu" and not shutil.which(os.environ.get("CXX") or "g++"):
        # Inductor writes and builds C++ kernels on CPU; without a compiler it would fail at the first step.
        if args.compile == "on":
            raise UserError("--compile on needs a C++ compiler for torch.compile on CPU: install one "
                            "(apt install g++, or set CXX), or run with --compile off")
        print0("note: no C++ compiler (g++) found, so torch.compile is off; install g++ for ~1.4x faster steps")
        compile_mode = "off"
    train_model = torch.compile(model, dynamic=False) if compile_mode == "on" else model
    print0(f"torch.compile: {compile_mode}" + (" (the first steps include compile time)" if compile_mode == "on" else ""))
    if ddp:
        # Train through the wrapper (it all-reduces gradients); evaluate, sample and save `model` itself.
        train_model = wrap_data_parallel(train_model)

    # -------------------------------------------------------------------------
    # Data
    train_loader = tokenizing_distributed_data_loader(tokenizer, B, T, "train", source=args.data, device=device,
                                                      resume_state=loader_state)
    eval_steps = max(1, args.eval_tokens // tokens_per_fwdbwd)

    def eval_val_bpb() -> float:
        val_loader = tokenizing_distributed_data_loader(tokenizer, B, T, "val", source=args.data, device=device)
        model.eval()
        try:
            return evaluate_bpb(model, val_loader, eval_steps, token_bytes, dtype)
        finally:
            val_loader.close()
            model.train()

    def progress_at(step_: int, seconds: float) -> float:
        return seconds / time_budget if time_budget else step_ / num_iterations

    def save(reason: str):
        meta = {"step": step, "val_bpb": val_bpb, "model_config": asdict(config), "user_config": user_config,
                "num_iterations": num_iterations, "dtype": str(dtype), "world_size": world_size,
                "loader_state": gather_loader_states(loader_state, world_size),
                "loop_state": {"step": step, "train_time": train_time, "smooth_loss": smooth_loss},
                "tokens_seen": step * total_batch, "reason": reason}
        if master:      # weights and optimizer states are the same on every rank: one writer, no races
            save_checkpoint(checkpoint_dir, step, model.state_dict(), [o.state_dict() for o in optimizers], meta)
            print0(f"saved step {step} to {checkpoint_dir} ({reason})")
        if ddp:         # the others wait here, not inside their next timed step
            dist.barrier()

    # Ctrl-C: finish the current step, save, exit. A second Ctrl-C stops at once.
    stop = {"requested": False}

    def on_sigint(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print0("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit without saving)")

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    wandb_run = get_wandb(args.run, "nanochat", user_config)

    # -------------------------------------------------------------------------
    # Training loop. Loop state = (step, train_time, smooth_loss, loader_state): exactly what a checkpoint saves.
    model.train()
    losses = []                  # per-step training losses, mean over ranks (returned for tests)
    while True:
        stopping = stop["requested"]    # read once: the handler may set it at any moment
        if ddp:
            stopping, train_time = agree_across_ranks(stopping, train_time, device)
        done = (train_time >= time_budget) if time_budget else (step >= num_iterations)
        if done or stopping or (args.eval_every > 0 and step % args.eval_every == 0 and step > 0):
            if not stopping:
                t0 = time.time()
                val_bpb = eval_val_bpb()
                print0(f"step {step:05d} | val bpb {val_bpb:.4f} | train time {train_time / 60:.2f} min | "
                       f"eval {time.time() - t0:.1f}s")
                wandb_run.log({"step": step, "val/bpb": val_bpb, "train_time": train_time})
        if done or (args.sample_every > 0 and step % args.sample_every == 0 and step > 0):
            if master:
                model.eval()
                for prompt in SAMPLE_PROMPTS:
                    ids = tokenizer.encode(prompt, prepend="<|bos|>")
                    with autocast_ctx(device, dtype):
                        out = list(model.generate(ids, max_tokens=16, temperature=0))
                    print0(f"sample: {tokenizer.decode(ids[1:] + out)!r}")
                model.train()
            if ddp:     # the others wait here, not inside their next timed step
                dist.barrier()
        if done or stopping or (args.save_every > 0 and step % args.save_every == 0 and step > 0):
            save("end of training" if done else "Ctrl-C" if stopping else f"--save-every {args.save_every}")
        if done or stopping:
            break

        # One optimizer step: the schedule, then grad_accum forward/backward passes and the update.
        synchronize(device)
        t0 = time.time()
        lrm = set_schedule(optimizers, step, progress_at(step, train_time), warmup_ratio=args.warmup_ratio,
                           warmdown_ratio=args.warmdown_ratio)
        train_loss, loader_state = train_step(train_model, optimizers, train_loader, grad_accum, device, dtype)
        synchronize(device)
        dt = time.time() - t0
        step += 1
        train_time += dt
        losses.append(train_loss)

        # Logging: debiased EMA of the loss, throughput, MFU against the measured peak, ETA.
        smooth_loss = 0.9 * smooth_loss + 0.1 * train_loss
        shown_loss = smooth_loss / (1 - 0.9 ** step)
        tok_per_sec = total_batch / dt
        mfu = flops_per_token * tok_per_sec / (peak_flops * world_size)
        if time_budget:
            eta = max(0.0, time_budget - train_time)
            where = f"{100 * train_time / time_budget:5.1f}%"
        else:
            eta = (num_iterations - step) * (train_time / step if step > 5 else dt)
            where = f"{step}/{num_iterations}"
        print0(f"step {step:05d} ({where}) | loss {shown_loss:.4f} | lrm {lrm:.3f} | dt {dt * 1000:.0f}ms | "
               f"tok/s {tok_per_sec:,.0f} | mfu {100 * mfu:.1f}% | eta {eta / 60:.1f}m")
        wandb_run.log({"step": step, "train/loss": train_loss, "train/lrm": lrm, "train/dt": dt,
                       "train/tok_per_sec": tok_per_sec, "train/mfu": mfu})
        if not math.isfinite(train_loss):
            raise SystemExit(f"error: the loss became {train_loss} at step {step}: lower the learning rates")

    signal.signal(signal.SIGINT, previous_handler)
    train_loader.close()
    print0(f"done: {step} steps, {train_time / 60:.2f} min of training, val bpb {val_bpb}, "
           f"peak RSS {peak_rss_bytes() / 2**30:.2f} GiB; checkpoints in {checkpoint_dir}")
    wandb_run.finish()
    compute_cleanup()
    return {"step": step, "val_bpb": val_bpb, "train_time": train_time, "losses": losses, "loader_state": loader_state}


if __name__ == "__main__":
    main()
