"""
The training loop every training stage shares (base_train, mid_train, chat_sft), and its parts:
the train step with gradient accumulation, the run length (steps or a time budget) and the LR schedule it drives,
the compile policy, Ctrl-C that saves first, resume with its config check, MFU/ETA logging, and the loop state that
a checkpoint saves whole.

A stage script reads flags, builds the model, optimizers and data, then:

    length = RunLength.from_flags(...)                    # how long, and the progress the LR schedule follows
    loop, train_model = start_or_resume(checkpoint_dir, args.resume, model, optimizers, length, args.compile, ...)
    run = TrainingRun(...)                                 # what the loop needs, named
    losses = train_loop(run, loop)                         # evals, samples and saves happen on their triggers

Under torchrun (CUDA) each rank trains on its own documents through DistributedDataParallel, one all-reduce per
optimizer step; the ranks agree on when to stop; rank 0 saves, with every rank's data position in the meta.
"""

import contextlib
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from nanochat.checkpoint_manager import find_last_step, load_checkpoint, save_checkpoint
from nanochat.common import Compute, UserError, autocast_ctx, keep_freed_memory, print0, synchronize
from nanochat.gpt import GPTConfig
from nanochat.optim import set_schedule

# Compile pays back after a few hundred steps on a CPU (a cold compile costs a minute or more; see README.md), so
# `--compile auto` leaves shorter CPU runs eager.
AUTO_COMPILE_MIN_STEPS = 200
AUTO_COMPILE_MIN_SECONDS = 5 * 60


# -----------------------------------------------------------------------------
# One optimizer step

def train_step(train_model, optimizers, batches, grad_accum: int, device, dtype):
    """One optimizer step over grad_accum micro-batches from `batches` (an iterator of (inputs, targets, state)).

    Under DDP the micro-batches before the last run inside no_sync(): their gradients only add up locally, and
    the last backward all-reduces the sum, so there is one all-reduce per optimizer step. Every rank then applies
    the same averaged gradient. Returns (mean loss over the micro-batches and the ranks, the last batch's state,
    this rank's input tokens: chat batches vary in length).
    """
    ddp = isinstance(train_model, DDP)
    loss_sum = torch.zeros((), device=device)
    state, tokens = None, 0
    for micro in range(grad_accum):
        x, y, state = next(batches)
        tokens += x.numel()
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
    return loss_sum.item() / (grad_accum * world_size), state, tokens     # .item(): the one host sync of the step


def grad_accum_steps(total_batch: int, device_batch: int, seq_len: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that every step sees total_batch tokens (-1 = one device batch each)."""
    tokens_per_fwdbwd = device_batch * seq_len * world_size
    total_batch = tokens_per_fwdbwd if total_batch == -1 else total_batch
    if total_batch % tokens_per_fwdbwd:
        raise UserError(f"--total-batch-size {total_batch} is not a multiple of device batch x seq len x processes "
                        f"= {device_batch} x {seq_len} x {world_size} = {tokens_per_fwdbwd}")
    return total_batch // tokens_per_fwdbwd


# -----------------------------------------------------------------------------
# Run length: a number of steps or a clock; the LR schedule follows its progress

@dataclass
class RunLength:
    num_iterations: int | None = None      # steps, or None when a time budget decides
    time_budget: float | None = None       # seconds of training steps (evals and the compiling first step excluded)
    description: str = ""

    @classmethod
    def from_flags(cls, time_budget_min: float = -1, num_iterations: int = -1, target_flops: float = -1,
                   target_param_data_ratio: float = -1, flops_per_token: float = 0, num_params: int = 0,
                   total_batch: int = 1) -> "RunLength":
        """The first of these that is on decides: a time budget, steps, a FLOP budget, tokens per parameter."""
        if time_budget_min > 0:
            return cls(None, time_budget_min * 60, f"{time_budget_min:g} minutes of training steps")
        if num_iterations > 0:
            return cls(num_iterations, None, f"{num_iterations} steps (--num-iterations)")
        if target_flops > 0:
            steps = max(1, round(target_flops / (flops_per_token * total_batch)))
            return cls(steps, None, f"{steps} steps to reach {target_flops:.3g} FLOPs")
        if target_param_data_ratio > 0:
            steps = max(1, round(target_param_data_ratio * num_params / total_batch))
            return cls(steps, None, f"{steps} steps for {target_param_data_ratio:g} tokens per parameter")
        raise UserError("no training length: give --num-iterations, --target-flops, --target-param-data-ratio "
                        "or --time-budget")

    def progress(self, step: int, train_time: float) -> float:
        """Where the run stands in [0, 1]: what the LR schedule follows."""
        return train_time / self.time_budget if self.time_budget else step / self.num_iterations

    def done(self, step: int, train_time: float) -> bool:
        return train_time >= self.time_budget if self.time_budget else step >= self.num_iterations

    def where_and_eta(self, step: int, train_time: float, dt: float) -> tuple[str, float]:
        """('37/100' or ' 12.5%', seconds left) for the step log line."""
        if self.time_budget:
            return f"{100 * train_time / self.time_budget:5.1f}%", max(0.0, self.time_budget - train_time)
        return f"{step}/{self.num_iterations}", (self.num_iterations - step) * (train_time / step if step > 5 else dt)


# -----------------------------------------------------------------------------
# Compile policy

def maybe_compile(model, requested: str, device, length: RunLength, steps_done: int):
    """torch.compile the model for training, or not: 'on', 'off', or 'auto' (on, except CPU runs too short to
    repay a cold compile). On a CPU inductor builds C++ kernels, so without a compiler 'on' is refused and
    'auto' stays eager. Returns (the model to train through, 'on' or 'off')."""
    mode = requested
    if mode == "auto":
        if length.time_budget:
            short = length.time_budget < AUTO_COMPILE_MIN_SECONDS
        else:
            short = length.num_iterations - steps_done < AUTO_COMPILE_MIN_STEPS
        mode = "off" if device.type == "cpu" and short else "on"
    if mode == "on" and device.type == "cpu" and not shutil.which(os.environ.get("CXX") or "g++"):
        if requested == "on":
            raise UserError("--compile on needs a C++ compiler for torch.compile on CPU: install one "
                            "(apt install g++, or set CXX), or run with --compile off")
        print0("note: no C++ compiler (g++) found, so torch.compile is off; install g++ for faster steps")
        mode = "off"
    print0(f"torch.compile: {mode}" + (" (the first step compiles, off the training clock)" if mode == "on" else ""))
    return (torch.compile(model, dynamic=False) if mode == "on" else model), mode


# -----------------------------------------------------------------------------
# Data parallel (torchrun on GPUs), kept small so tests/test_ddp.py runs it on gloo

def wrap_data_parallel(train_model):
    """DDP around the (possibly compiled) model: it starts every rank from rank 0's weights and averages the
    gradients across ranks in backward (the lm_head's too: the fused loss returns it like any autograd op)."""
    return DDP(train_model)


def agree_across_ranks(stop: bool, train_time: float, device) -> tuple[bool, float]:
    """Every rank must decide alike whether to stop and see the same clock (the LR schedule and a time budget
    follow it): a rank that leaves the loop alone would leave the others waiting in their next all-reduce.
    Stop if any rank got Ctrl-C; the clock is the slowest rank's."""
    flags = torch.tensor([float(stop), train_time], dtype=torch.float64, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    stop_flag, train_time = flags.tolist()
    return bool(stop_flag), train_time


def gather_loader_states(loader_state, world_size: int):
    """What a checkpoint saves as the data position: the state itself in one process, a list indexed by rank
    under DDP (each rank reads its own documents). A collective: every rank must call it."""
    if world_size == 1:
        return loader_state
    states = [None] * world_size
    dist.all_gather_object(states, loader_state)
    return states


def loader_state_for_rank(saved_states, saved_world_size: int, rank: int, world_size: int, where: str):
    """This rank's data-loader state from a checkpoint, refusing a different number of processes."""
    if saved_world_size != world_size:
        raise UserError(f"{where} was saved by {saved_world_size} process(es) but this run has {world_size}: each "
                        f"process resumes its own data position, so resume with {saved_world_size} "
                        f"(torchrun --nproc_per_node={saved_world_size}, or no torchrun for 1)")
    return saved_states[rank] if world_size > 1 else saved_states


# -----------------------------------------------------------------------------
# Loop state, checkpoints, resume

@dataclass
class LoopState:
    """What the loop carries from one step to the next, and exactly what a checkpoint saves (asdict) to continue
    a run where it stopped."""
    step: int = 0
    train_time: float = 0.0          # seconds spent in training steps (evals, samples and saves excluded)
    smooth_loss: float = 0.0         # EMA of the training loss (shown debiased)
    val_bpb: float | None = None     # the latest validation bits per byte
    task_metric: float | None = None # the latest CORE (pretraining) or ChatCORE (SFT), when the run computes it
    loader_state: Any = None         # this rank's data position (in a checkpoint: every rank's)


def save_training_checkpoint(checkpoint_dir: str, loop: LoopState, model, optimizers, compute: Compute,
                             meta: dict, reason: str):
    """model_/optim_/meta_<step> of this loop state. Every rank must call it (it gathers the data positions);
    rank 0 writes (weights and optimizer states are the same on every rank: one writer, no races)."""
    loop_state = {**asdict(loop), "loader_state": gather_loader_states(loop.loader_state, compute.world_size)}
    if compute.master:
        meta = {"step": loop.step, "val_bpb": loop.val_bpb, **meta, "world_size": compute.world_size,
                "loop_state": loop_state, "reason": reason}
        save_checkpoint(checkpoint_dir, loop.step, model.state_dict(), [o.state_dict() for o in optimizers], meta)
        print0(f"saved step {loop.step} to {checkpoint_dir} ({reason})")
    if compute.ddp:     # the others wait here, not inside their next timed step
        dist.barrier()


def resume(checkpoint_dir: str, which: str, model, optimizers, model_config: dict, compute: Compute):
    """Load weights and optimizer states of step `which` ('latest' or a number) into model and optimizers and
    return (its LoopState, its meta). Refuses a checkpoint built with other model flags."""
    if which != "latest" and not which.isdigit():
        raise UserError(f"--resume {which!r}: use 'latest' or a step number")
    step = find_last_step(checkpoint_dir) if which == "latest" else int(which)
    model_data, optim_data, meta = load_checkpoint(checkpoint_dir, step, compute.device, load_optimizer=True)
    where = f"{checkpoint_dir}/meta_{step:06d}.json"
    try:
        saved_config = asdict(GPTConfig(**meta["model_config"]))    # an older meta lacks the newer options' defaults
    except (TypeError, ValueError):
        saved_config = meta["model_config"]
    if saved_config != model_config:
        raise UserError(f"{where} has model_config {meta['model_config']} "
                        f"but these flags build {model_config}: resume with the same --depth/--head-dim/...")
    model.load_state_dict(model_data)
    for opt, state in zip(optimizers, optim_data):
        opt.load_state_dict(state)
    # (checkpoints from before LoopState kept val_bpb and the data position beside loop_state; older ones named
    # task_metric core_metric)
    saved = {"val_bpb": meta.get("val_bpb"), "loader_state": meta.get("loader_state"), **meta["loop_state"]}
    if "core_metric" in saved:
        saved["task_metric"] = saved.pop("core_metric")
    loader_state = loader_state_for_rank(saved["loader_state"], meta.get("world_size", 1), compute.rank,
                                         compute.world_size, where)
    loop = LoopState(**{**saved, "loader_state": loader_state})
    print0(f"resumed from step {loop.step} of {checkpoint_dir} ({loop.train_time / 60:.1f} min trained)")
    return loop, meta


def start_or_resume(checkpoint_dir: str, which: str, model, optimizers, length: RunLength, compile_mode: str,
                    model_config: dict, compute: Compute, schedule: dict) -> tuple[LoopState, torch.nn.Module]:
    """The loop state (fresh, or resumed from step `which` of checkpoint_dir when given) and the model to train
    through: compiled per compile_mode, wrapped in DDP under torchrun (evaluate, sample and save `model` itself).
    A resumed run keeps the LR schedule it started with: its warmup/warmdown ratios (updated in `schedule`, e.g.
    across a change of their defaults) and, for a fixed number of steps, its length."""
    loop = LoopState()
    if which:
        loop, meta = resume(checkpoint_dir, which, model, optimizers, model_config, compute)
        if not length.time_budget:
            length.num_iterations = meta["num_iterations"]
        started_with = {k: v for k, v in meta.get("user_config", {}).items() if k in schedule}
        if any(schedule[k] != v for k, v in started_with.items()):
            print0(f"resuming with the schedule the run started with: {started_with} (not {schedule})")
        schedule.update(started_with)
    train_model, _ = maybe_compile(model, compile_mode, compute.device, length, loop.step)
    if compute.ddp:     # the wrapper all-reduces the gradients
        train_model = wrap_data_parallel(train_model)
    return loop, train_model


class CtrlC:
    """Ctrl-C finishes the current step and asks the loop to save and stop; a second Ctrl-C quits at once."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print0("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit without saving)")

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


# -----------------------------------------------------------------------------
# The loop

@dataclass
class TrainingRun:
    """Everything train_loop needs that does not change from step to step."""
    model: torch.nn.Module                   # evaluated, sampled and saved
    train_model: torch.nn.Module             # trained through: the model, compiled and/or wrapped in DDP
    optimizers: list
    batches: Any                             # iterator of (inputs, targets, loader state)
    grad_accum: int
    length: RunLength
    compute: Compute
    flops_per_token: float
    peak_flops: float                        # matmul peak of one device: the MFU denominator
    evaluate: Callable[[], float]            # -> val bpb
    save: Callable[[LoopState, str], None]   # (loop state, reason)
    sample: Callable[[], None] | None = None
    task_metric: Callable[[], dict] | None = None    # CORE or ChatCORE: -> {"name", "value", "line"}
    eval_every: int = -1                     # -1: at the end only (also for the three below)
    sample_every: int = -1
    task_metric_every: int = -1
    save_every: int = -1
    schedule: dict = field(default_factory=dict)   # lr_multiplier's warmup_ratio / warmdown_ratio
    wandb_run: Any = None
    # filled by train_loop, for the report's plots: every step's loss, every evaluation's val bpb
    history: dict = field(default_factory=lambda: {k: [] for k in ("step", "minutes", "loss", "val_step",
                                                                   "val_minutes", "val_bpb")})


def every(step: int, period: int) -> bool:
    """A periodic trigger: True at steps period, 2 * period, ... (never at step 0; period -1 = off)."""
    return period > 0 and step > 0 and step % period == 0


def train_loop(run: TrainingRun, loop: LoopState) -> list[float]:
    """Train from `loop` until the run's length is reached or Ctrl-C; evaluate, sample and save on their
    triggers (and always at the end). Updates `loop` in place; returns this call's per-step training losses."""
    compute, length = run.compute, run.length
    losses = []
    if compute.device.type == "cpu" and keep_freed_memory():
        # every step allocates the same large activations: reused, they are not page-faulted in again
        print0("malloc keeps freed memory for the next step (no mmap)")
    # A compiled model compiles in its first step (a minute or more on a CPU, less with torch's cache warm): that
    # step is kept off the clock, so a time budget buys the same steps whatever the cache held.
    compiling = hasattr(getattr(run.train_model, "module", run.train_model), "_orig_mod")   # (inside DDP, too)
    run.model.train()
    with CtrlC() as ctrl_c:
        while True:
            stopping = ctrl_c.requested        # read once: the handler may set it at any moment
            if compute.ddp:
                stopping, loop.train_time = agree_across_ranks(stopping, loop.train_time, compute.device)
            last_step = length.done(loop.step, loop.train_time)
            eval_now = not stopping and (last_step or every(loop.step, run.eval_every))
            sample_now = run.sample is not None and (last_step or every(loop.step, run.sample_every))
            metric_now = run.task_metric is not None and not stopping and (last_step or
                                                                           every(loop.step, run.task_metric_every))
            save_now = last_step or stopping or every(loop.step, run.save_every)

            if eval_now:
                t0 = time.time()
                run.model.eval()
                loop.val_bpb = run.evaluate()
                run.model.train()
                print0(f"step {loop.step:05d} | val bpb {loop.val_bpb:.4f} | train time {loop.train_time / 60:.2f} min"
                       f" | eval {time.time() - t0:.1f}s")
                run.wandb_run.log({"step": loop.step, "val/bpb": loop.val_bpb, "train_time": loop.train_time})
                for key, value in (("val_step", loop.step), ("val_minutes", loop.train_time / 60),
                                   ("val_bpb", loop.val_bpb)):
                    run.history[key].append(value)
            if sample_now or metric_now:
                if compute.master:      # rank 0 alone: the others wait at the barrier, not in their next step
                    run.model.eval()
                    if sample_now:
                        run.sample()
                    if metric_now:
                        t0 = time.time()
                        metric = run.task_metric()
                        loop.task_metric = metric["value"]
                        print0(f"step {loop.step:05d} | {metric['line']} | eval {time.time() - t0:.1f}s")
                        run.wandb_run.log({"step": loop.step, metric["name"]: metric["value"]})
                    run.model.train()
                if compute.ddp:
                    dist.barrier()
            if save_now:
                run.save(loop, "end of training" if last_step else "Ctrl-C" if stopping
                         else f"--save-every {run.save_every}")
            if last_step or stopping:
                break

            # One optimizer step: the schedule, then grad_accum forward/backward passes and the update.
            synchronize(compute.device)
            t0 = time.time()
            lrm = set_schedule(run.optimizers, loop.step, length.progress(loop.step, loop.train_time), **run.schedule)
            train_loss, loop.loader_state, tokens = train_step(run.train_model, run.optimizers, run.batches,
                                                               run.grad_accum, compute.device, compute.dtype)
            synchronize(compute.device)
            dt = time.time() - t0
            loop.step += 1
            if compiling:
                compiling = False
                print0(f"step {loop.step:05d} compiled the model: {dt:.1f}s, not counted in the training time")
            else:
                loop.train_time += dt
            losses.append(train_loss)
            for key, value in (("step", loop.step), ("minutes", loop.train_time / 60), ("loss", train_loss)):
                run.history[key].append(value)
            log_step(run, loop, train_loss, lrm, dt, tokens * compute.world_size)
    return losses


def log_step(run: TrainingRun, loop: LoopState, train_loss: float, lrm: float, dt: float, tokens: int):
    """The step line: debiased EMA of the loss, LR multiplier, throughput (input tokens of the step over all
    ranks, padding included), MFU against the measured peak, ETA."""
    loop.smooth_loss = 0.9 * loop.smooth_loss + 0.1 * train_loss
    shown_loss = loop.smooth_loss / (1 - 0.9 ** loop.step)
    tok_per_sec = tokens / dt
    mfu = run.flops_per_token * tok_per_sec / (run.peak_flops * run.compute.world_size)
    where, eta = run.length.where_and_eta(loop.step, loop.train_time, dt)
    print0(f"step {loop.step:05d} ({where}) | loss {shown_loss:.4f} | lrm {lrm:.3f} | dt {dt * 1000:.0f}ms | "
           f"tok/s {tok_per_sec:,.0f} | mfu {100 * mfu:.1f}% | eta {eta / 60:.1f}m")
    run.wandb_run.log({"step": loop.step, "train/loss": train_loss, "train/lrm": lrm, "train/dt": dt,
                       "train/tok_per_sec": tok_per_sec, "train/mfu": mfu})
    if not math.isfinite(train_loss):
        raise SystemExit(f"error: the loss became {train_loss} at step {loop.step}: lower the learning rates")
