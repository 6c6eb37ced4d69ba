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

import os
import time
from dataclasses import asdict

import torch

from nanochat import cli, report
from nanochat.checkpoint_manager import STAGE_DIRS
from nanochat.common import UserError, autocast_ctx, compute_cleanup, compute_init, dtype_reason, get_base_dir, \
    get_wandb, peak_rss_bytes, print0
from nanochat.dataloader import tokenizing_distributed_data_loader
from nanochat.gpt import MLP_KINDS, build_model, config_from_depth, measure_matmul_flops
from nanochat.loss_eval import evaluate_bpb
from nanochat.tokenizer import get_token_bytes, get_tokenizer
from nanochat.train import (LoopState, RunLength, TrainingRun, grad_accum_steps, save_training_checkpoint,
                            start_or_resume, train_loop)

CORE_MAX_PER_TASK = 200     # items per CORE task during training (README.md: its time and standard error)
SAMPLE_PROMPTS = ["The capital of France is", "The meaning of the word", "It is a truth universally acknowledged",
                  "In Python, a list is"]


def parse_args(argv=None):
    p = cli.parser("Pretrain a nanochat base model")
    # model
    p.add_argument("--depth", type=cli.positive_int, default=4, help="transformer layers; width = 64 * depth")
    p.add_argument("--head-dim", type=cli.positive_int, default=128, help="attention head dimension")
    p.add_argument("--n-kv-head", type=int, default=-1, help="key/value heads for GQA/MQA (-1 = same as query heads)")
    p.add_argument("--max-seq-len", type=cli.positive_int, default=512, help="context length in tokens")
    p.add_argument("--mlp", choices=MLP_KINDS, default="relu2",
                   help="MLP: relu2 (relu squared, 4x width) or swiglu (8/3x width: the same parameters)")
    p.add_argument("--window", type=cli.nonneg_int, default=0,
                   help="sliding-window attention: each token sees itself and the window-1 before it (0 = full "
                        "attention); the KV cache of a windowed layer stops growing at the window")
    p.add_argument("--window-pattern", default="S",
                   help="which layers the window applies to, tiled over the layers: S = windowed, L = full "
                        "(e.g. SSSL: three windowed layers, then one full)")
    # batch and length
    p.add_argument("--device-batch-size", type=cli.positive_int, default=8, help="sequences per forward/backward")
    p.add_argument("--total-batch-size", type=cli.int_or_off, default=8192,
                   help="tokens per optimizer step (gradient accumulation fills it; -1 = one device batch)")
    p.add_argument("--num-iterations", type=cli.int_or_off, default=-1,
                   help="optimizer steps (-1 = derive from the next flags)")
    p.add_argument("--target-flops", type=cli.float_or_off, default=-1, help="train for this many FLOPs (-1 = off)")
    p.add_argument("--target-param-data-ratio", type=cli.float_or_off, default=20,
                   help="train on this many tokens per parameter (Chinchilla = 20; -1 = off)")
    p.add_argument("--time-budget", type=cli.float_or_off, default=-1,
                   help="train for this many minutes of step time (evals and the compile excluded); the LR "
                        "schedule follows the clock; overrides the length flags above (-1 = off)")
    # optimization
    cli.add_learning_rate_args(p)
    p.add_argument("--warmup-ratio", type=cli.nonneg_float, default=0.0, help="share of the run with linear LR warmup")
    # 0.65 (public nanochat's value) beat 0.2 at depth 4 and 6 in 14-minute runs (README, Speed issue)
    p.add_argument("--warmdown-ratio", type=cli.nonneg_float, default=0.65,
                   help="share of the run with linear LR decay to 0")
    # evaluation, logging, saving
    p.add_argument("--eval-every", type=cli.int_or_off, default=250,
                   help="val bpb every N steps (and at the end; -1 = end only)")
    p.add_argument("--eval-tokens", type=cli.positive_int, default=262144, help="validation tokens per bpb evaluation")
    p.add_argument("--core-metric-every", type=cli.int_or_off, default=-1,
                   help="CORE metric every N steps and at the end (-1 = off; scripts.base_eval scores a checkpoint)")
    p.add_argument("--core-metric-max-per-task", type=cli.int_or_off, default=CORE_MAX_PER_TASK,
                   help="items per CORE task during training: a fixed seeded subset (-1 = all)")
    p.add_argument("--sample-every", type=cli.int_or_off, default=-1, help="print greedy samples every N steps (-1 = end only)")
    p.add_argument("--save-every", type=cli.int_or_off, default=-1, help="checkpoint every N steps (-1 = end only)")
    p.add_argument("--resume", default="", help="resume from 'latest' or a step number of this depth's checkpoints")
    p.add_argument("--model-tag", default="", help="checkpoint folder name (default d<depth>)")
    p.add_argument("--run", default="dummy", help="wandb run name ('dummy' = no wandb)")
    # system
    cli.add_data_arg(p)
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the model (auto = on, except CPU runs too short to repay the compile time: "
                        "under 5 minutes or 200 steps)")
    p.add_argument("--seed", type=int, default=42, help="random seed")
    cli.add_system_args(p)
    args = p.parse_args(argv)
    if args.warmup_ratio + args.warmdown_ratio > 1:
        p.error(f"--warmup-ratio {args.warmup_ratio} + --warmdown-ratio {args.warmdown_ratio} exceed the whole run")
    return args


def main(argv=None):
    t_start = time.time()
    args = parse_args(argv)
    user_config = vars(args).copy()

    # -------------------------------------------------------------------------
    # Compute
    compute = compute_init(args.device_type, seed=args.seed)
    device, dtype = compute.device, compute.dtype
    tokenizer = get_tokenizer()           # before the peak measurement: a missing tokenizer should fail at once
    token_bytes = get_token_bytes(device)
    peak_flops = measure_matmul_flops(device, dtype)
    print0(f"compute: {dtype_reason(device)}; measured {str(dtype)[6:]} matmul peak {peak_flops / 1e9:.0f} GFLOP/s "
           f"on {torch.get_num_threads()} threads (the MFU denominator)")

    # -------------------------------------------------------------------------
    # Model
    try:
        config = config_from_depth(args.depth, tokenizer.get_vocab_size(), args.max_seq_len, args.head_dim,
                                   args.n_kv_head, mlp=args.mlp, window=args.window,
                                   window_pattern=args.window_pattern)
    except ValueError as e:
        raise UserError(str(e))
    model = build_model(config, device)
    n_params = model.num_params()
    flops_per_token = model.estimate_flops()
    print0(f"model: {asdict(config)}")
    print0("parameters: " + ", ".join(f"{k} {v:,}" for k, v in n_params.items())
           + f"; {flops_per_token / 1e6:.1f} MFLOP/token")

    # -------------------------------------------------------------------------
    # Batch and length
    B, T = args.device_batch_size, args.max_seq_len
    grad_accum = grad_accum_steps(args.total_batch_size, B, T, compute.world_size)
    total_batch = grad_accum * B * T * compute.world_size
    length = RunLength.from_flags(args.time_budget, args.num_iterations, args.target_flops,
                                  args.target_param_data_ratio, flops_per_token, n_params["total"], total_batch)
    print0(f"batch: {total_batch:,} tokens/step = {B} x {T} x {compute.world_size} processes x {grad_accum} "
           f"accumulation; length: {length.description}")

    # -------------------------------------------------------------------------
    # Optimizers and loop state (fresh, or resumed from a checkpoint)
    optimizers = model.setup_optimizers(unembedding_lr=args.unembedding_lr, embedding_lr=args.embedding_lr,
                                        matrix_lr=args.matrix_lr)
    checkpoint_dir = os.path.join(get_base_dir(), STAGE_DIRS["base"], args.model_tag or f"d{args.depth}")
    schedule = {"warmup_ratio": args.warmup_ratio, "warmdown_ratio": args.warmdown_ratio}
    loop, train_model = start_or_resume(checkpoint_dir, args.resume, model, optimizers, length, args.compile,
                                        asdict(config), compute, schedule)

    # -------------------------------------------------------------------------
    # Data, evaluation, samples, saving
    core_bundle = None
    if args.core_metric_every > 0:      # imported only when used: a run without CORE loads none of it
        from nanochat.core_eval import evaluate_core
        from nanochat.eval_data import bundle_for_eval
        core_bundle = bundle_for_eval()     # at start-up, not at step N
    train_loader = tokenizing_distributed_data_loader(tokenizer, B, T, "train", source=args.data, device=device,
                                                      resume_state=loop.loader_state)
    eval_steps = max(1, args.eval_tokens // (B * T * compute.world_size))

    def evaluate() -> float:
        val_loader = tokenizing_distributed_data_loader(tokenizer, B, T, "val", source=args.data, device=device)
        try:
            return evaluate_bpb(model, val_loader, eval_steps, token_bytes, dtype)
        finally:
            val_loader.close()

    def sample():
        for prompt in SAMPLE_PROMPTS:
            ids = tokenizer.encode(prompt, prepend="<|bos|>")
            with autocast_ctx(device, dtype):
                out = list(model.generate(ids, max_tokens=16, temperature=0))
            print0(f"sample: {tokenizer.decode(ids[1:] + out)!r}")

    def core_metric() -> dict:
        core = evaluate_core(model, tokenizer, device, dtype, max_per_task=args.core_metric_max_per_task,
                             bundle_dir=core_bundle, progress=False)
        return {"name": "core_metric", "value": core["core"], "line": core["line"]}

    def save(loop: LoopState, reason: str):
        meta = {"model_config": asdict(config), "user_config": user_config, "num_iterations": length.num_iterations,
                "dtype": str(dtype), "tokens_seen": loop.step * total_batch}
        save_training_checkpoint(checkpoint_dir, loop, model, optimizers, compute, meta, reason)

    # -------------------------------------------------------------------------
    # Training loop
    run = TrainingRun(model=model, train_model=train_model, optimizers=optimizers, batches=train_loader,
                      grad_accum=grad_accum, length=length, compute=compute,
                      flops_per_token=flops_per_token, peak_flops=peak_flops, evaluate=evaluate, save=save,
                      sample=sample, task_metric=core_metric if args.core_metric_every > 0 else None,
                      eval_every=args.eval_every, sample_every=args.sample_every,
                      task_metric_every=args.core_metric_every, save_every=args.save_every,
                      schedule=schedule,
                      wandb_run=get_wandb(args.run, "nanochat", user_config))
    try:
        losses = train_loop(run, loop)
    finally:
        train_loader.close()
    print0(f"done: {loop.step} steps, {loop.train_time / 60:.2f} min of training, val bpb {loop.val_bpb}, "
           f"peak RSS {peak_rss_bytes() / 2**30:.2f} GiB; checkpoints in {checkpoint_dir}")
    run.wandb_run.finish()
    report.record("base_train", settings=user_config, seconds=time.time() - t_start, history=run.history,
                  metrics={"val_bpb": loop.val_bpb, "steps": loop.step, "train_minutes": loop.train_time / 60,
                           "parameters": n_params["total"], "tokens": loop.step * total_batch,
                           "core_metric": loop.task_metric})
    compute_cleanup()
    return {"step": loop.step, "val_bpb": loop.val_bpb, "train_time": loop.train_time, "losses": losses,
            "loader_state": loop.loader_state}


if __name__ == "__main__":
    main()
