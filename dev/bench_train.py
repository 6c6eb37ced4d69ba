"""
Training benchmark: runs scripts.base_train itself (real data, real loader, real optimizer) in subprocesses,
one configuration after another, and prints a table of ms/step, tok/s, MFU, peak RSS and compile time, plus
the matmul peak of each dtype measured in the same run. Needs a tokenizer and data (see README: tok_train,
nanochat.dataset --offline). Hold /tmp/bench.lock so two benchmarks never share the cores:

    flock /tmp/bench.lock python -m dev.bench_train                      # throughput table (d4 b8, d6 b32, d6 ours)
    flock /tmp/bench.lock python -m dev.bench_train --bpb-steps 300      # + val bpb fp32 vs bf16 at equal steps
    flock /tmp/bench.lock python -m dev.bench_train --time-budget 14 --only none   # 14-minute d4 run, its val bpb
    python -m dev.bench_train --shapes "d6 b32" --modes bfloat16:on --steps 2 --profile  # where a step's time goes
    git worktree add /tmp/old HEAD~3 && python -m dev.bench_train --against /tmp/old --rounds 2   # old code vs new
    flock /tmp/bench.lock python -m dev.bench_train --only none --options-minutes 3     # the model options' bpb
    flock /tmp/bench.lock python -m dev.bench_train --only none --sweep-steps 150 --sweep "--matrix-lr 0.04|--warmdown-ratio 0.5"

Each throughput row is the median step time over --steps steps after --warmup steps (compile happens in the
warmup; its cost is the 'first steps' column). Checkpoints go to a temporary base dir and are deleted.
Rows run one after another, so a busy neighbour can slow one row and not the next. The compile speed-up is
therefore also measured interleaved (--interleave-rounds): one process, one model, eager and compiled steps
taking turns on the same real batches; the median of the per-round ratios is robust to that noise.
--against DIR compares with another checkout of this project (an older commit): every row runs there and here in
turn (ABBA order), --rounds times, and the table gains the baseline's ms/step and the median over rounds of the
speed ratio (their ms/step / ours, > 1 = this checkout is faster).
--options-minutes M trains each model option (OPTIONS: SwiGLU, sliding windows) next to the defaults, at the
d4 b8 and d6 b32 shapes, M minutes each (bf16, compiled), and reports steps, tok/s and val bpb on the same 1M tokens.
--sweep-steps N trains the --sweep-depth model with the defaults and then with each --sweep candidate (base_train
flags) for N steps: short runs to pick hyperparameters. Equal steps, not equal minutes: the shared host's speed
varied by 20% from run to run, which would decide a timed comparison. A candidate that changes the tokens per step
gives its own --num-iterations (the last flag wins); its speed shows in ms/step.
The last line is all results as JSON ("RESULTS {...}").
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from nanochat.common import compute_dtype, get_base_dir
from nanochat.dataloader import tokenizing_distributed_data_loader
from nanochat.gpt import build_model, config_from_depth, measure_matmul_flops
from nanochat.tokenizer import get_tokenizer
from nanochat.train import train_step

# (name, base_train flags): a depth-4 model, the public nanochat CPU recipe shape (depth 6, head dim 64, batch 32),
# and the same depth, sequence and total batch with base_train's defaults for the rest.
SHAPES = {
    "d4 b8": ["--depth", "4", "--head-dim", "64", "--max-seq-len", "512", "--device-batch-size", "8",
              "--total-batch-size", "8192"],
    "d6 b32": ["--depth", "6", "--head-dim", "64", "--max-seq-len", "512", "--device-batch-size", "32",
               "--total-batch-size", "16384"],
    "d6 ours": ["--depth", "6", "--head-dim", "128", "--max-seq-len", "512", "--device-batch-size", "8",
                "--total-batch-size", "16384"],
}
# The model options of gpt.py against the defaults (relu^2 MLP, full attention). Window 128 is a quarter of the
# 512-token context; SSSL keeps one full-attention layer in four.
OPTIONS = {"defaults": [], "swiglu": ["--mlp", "swiglu"], "window 128": ["--window", "128"],
           "window 128 SSSL": ["--window", "128", "--window-pattern", "SSSL"]}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_RE = re.compile(r"^step (\d+) .*\| loss ([\d.]+) .*\| dt (\d+)ms \| tok/s ([\d,]+) \| mfu ([\d.]+)%")


def run_base_train(flags, dtype: str, workdir: str, log_name: str, tree: str | None = None) -> dict:
    """Run base_train (of checkout `tree`, default this one) in a subprocess with NANOCHAT_DTYPE=dtype; parse its
    step lines, val bpb and peak RSS."""
    env = {**os.environ, "NANOCHAT_DTYPE": dtype, "NANOCHAT_BASE_DIR": workdir, "PYTHONUNBUFFERED": "1"}
    if tree:        # `python -m` puts the working directory first on sys.path: that tree's packages win
        env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "scripts.base_train", "--model-tag", "bench", *flags]
    log_path = os.path.join(workdir, log_name)
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=tree or REPO)
    text = open(log_path).read()
    if proc.returncode != 0 and "\ndone: " in text:
        print(f"  warning: base_train exited with code {proc.returncode} after finishing (see {log_path})")
    elif proc.returncode != 0:
        raise SystemExit(f"base_train failed ({' '.join(cmd)}):\n{text[-3000:]}")
    steps = [m.groups() for line in text.splitlines() if (m := STEP_RE.match(line))]
    bpbs = re.findall(r"val bpb ([\d.]+) \| train time ([\d.]+) min", text)
    rss = re.search(r"peak RSS ([\d.]+) GiB", text)
    shutil.rmtree(os.path.join(workdir, "base_checkpoints"), ignore_errors=True)
    return {"dt_ms": [int(s[2]) for s in steps], "mfu": [float(s[4]) for s in steps],
            "loss": [float(s[1]) for s in steps], "val_bpb": float(bpbs[-1][0]) if bpbs else None,
            "train_min": float(bpbs[-1][1]) if bpbs else None, "rss_gib": float(rss.group(1)) if rss else None,
            "log": log_path}


def median_timed_ms(runs: list[dict], warmup: int) -> float:
    """Median step time over the steps after the warm-up of every run."""
    return statistics.median(t for r in runs for t in r["dt_ms"][warmup:])


def interleaved_compile_speedup(shape: str, rounds: int, source: str, profile: bool = False) -> dict:
    """Eager vs torch.compile'd train steps of one model, taking turns on the same real batches (see docstring).
    profile: also print torch.profiler's table of one compiled step (where the time goes, by operator)."""
    flags = dict(zip(SHAPES[shape][::2], SHAPES[shape][1::2]))
    B, T = int(flags["--device-batch-size"]), int(flags["--max-seq-len"])
    grad_accum = int(flags["--total-batch-size"]) // (B * T)
    tokenizer = get_tokenizer()
    config = config_from_depth(int(flags["--depth"]), tokenizer.get_vocab_size(), T, int(flags["--head-dim"]))
    device = torch.device("cpu")
    dtype = compute_dtype(device)
    model = build_model(config, device)
    optimizers = model.setup_optimizers()
    compiled = torch.compile(model, dynamic=False)
    loader = tokenizing_distributed_data_loader(tokenizer, B, T, "train", source=source)
    batches = [next(loader) for _ in range(grad_accum)]
    loader.close()

    def timed_step(train_model) -> float:
        t0 = time.perf_counter()
        train_step(train_model, optimizers, iter(batches), grad_accum, device, dtype)
        return time.perf_counter() - t0

    timed_step(model)
    compile_s = timed_step(compiled)              # the first compiled step includes compilation
    eager, comp = [], []
    for _ in range(rounds):
        eager.append(timed_step(model))
        comp.append(timed_step(compiled))
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            timed_step(compiled)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return {"shape": shape, "dtype": str(dtype)[6:], "eager_s": statistics.median(eager),
            "compiled_s": statistics.median(comp), "first_compiled_step_s": compile_s,
            "speedup": statistics.median(e / c for e, c in zip(eager, comp))}


def main():
    p = argparse.ArgumentParser(description="Benchmark base_train: throughput, MFU, memory, bf16 vs fp32 quality")
    p.add_argument("--shapes", default="d4 b8,d6 b32,d6 ours", help="comma-separated rows of SHAPES to run")
    p.add_argument("--modes", default="float32:off,bfloat16:off,bfloat16:on",
                   help="comma-separated dtype:compile pairs (compile on/off)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (include torch.compile)")
    p.add_argument("--bpb-steps", type=int, default=-1,
                   help="also train d4 for this many steps in fp32 and bf16 and compare val bpb (-1 = off)")
    p.add_argument("--time-budget", type=float, default=-1,
                   help="also run d4 (or --extra's --depth) for this many minutes with base_train's defaults, "
                        "report val bpb (-1 = off)")
    p.add_argument("--extra", default="", help="extra base_train flags for every run, e.g. '--data offline'")
    p.add_argument("--only", default="", help="'none' to skip the throughput table")
    p.add_argument("--interleave-rounds", type=int, default=6,
                   help="eager/compiled step pairs per shape for the interleaved compile speed-up (0 = skip)")
    p.add_argument("--profile", action="store_true", help="print an operator profile of one compiled step per shape")
    p.add_argument("--against", default="", help="another checkout of this project to compare each row with")
    p.add_argument("--rounds", type=int, default=1, help="with --against: runs of each row per checkout, in ABBA order")
    p.add_argument("--options-minutes", type=float, default=-1,
                   help="train each of OPTIONS for this many minutes at d4 b8 and d6 b32: steps, tok/s, val bpb "
                        "(-1 = off)")
    p.add_argument("--options-shapes", default="d4 b8,d6 b32", help="SHAPES rows for --options-minutes")
    p.add_argument("--sweep-steps", type=int, default=-1,
                   help="train --sweep-depth with base_train's defaults and with each --sweep candidate for this many "
                        "steps (compiled); val bpb of each on the same 0.5M tokens, and ms/step (-1 = off)")
    p.add_argument("--sweep", default="--matrix-lr 0.04|--warmdown-ratio 0.5",
                   help="'|'-separated sweep candidates, each a string of base_train flags")
    p.add_argument("--sweep-depth", type=int, default=4, help="model depth of the sweep")
    args = p.parse_args()
    if args.against and not os.path.isfile(os.path.join(args.against, "scripts", "base_train.py")):
        raise SystemExit(f"error: --against {args.against}: no scripts/base_train.py there (give a checkout)")

    src_tok = os.path.join(get_base_dir(), "tokenizer")
    if not os.path.exists(os.path.join(src_tok, "tokenizer.pkl")):
        raise SystemExit(f"error: no tokenizer in {src_tok}: run `python -m scripts.tok_train --vocab-size 8192`")
    workdir = tempfile.mkdtemp(prefix="bench_train_")
    shutil.copytree(src_tok, os.path.join(workdir, "tokenizer"))
    for name in ("offline_data", "base_data"):     # share the data already built/downloaded
        if os.path.isdir(os.path.join(get_base_dir(), name)):
            os.symlink(os.path.join(get_base_dir(), name), os.path.join(workdir, name))
    extra = args.extra.split()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; logs in {workdir}")
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "peak_gflops": {}}
    for dtype in (torch.float32, torch.bfloat16):
        peak = measure_matmul_flops("cpu", dtype, seconds=2) / 1e9
        results["peak_gflops"][str(dtype)[6:]] = round(peak)
        print(f"measured matmul peak {str(dtype)[6:]}: {peak:.0f} GFLOP/s")

    if args.only != "none":
        n = args.warmup + args.steps
        rows = []
        for shape in args.shapes.split(","):
            for mode in args.modes.split(","):
                dtype, comp = mode.split(":")
                flags = SHAPES[shape] + ["--num-iterations", str(n), "--eval-every", "-1", "--eval-tokens", "4096",
                                         "--compile", comp, *extra]
                log = f"{shape.replace(' ', '_')}_{dtype}_{comp}"
                ours, theirs = [], []
                for i in range(args.rounds if args.against else 1):
                    runs = [(ours, None, f"{log}_{i}.log")]
                    if args.against:    # ABBA order: neither checkout always runs first
                        runs.insert(i % 2, (theirs, args.against, f"{log}_against{i}.log"))
                    for results_list, tree, log_name in runs:
                        results_list.append(run_base_train(flags, dtype, workdir, log_name, tree))
                tokens = int(SHAPES[shape][SHAPES[shape].index("--total-batch-size") + 1])
                dt = median_timed_ms(ours, args.warmup)
                base_dt = median_timed_ms(theirs, args.warmup) if theirs else None
                # per-round ratios (each pair ran back to back): their median is robust to a slow moment
                round_ratios = [median_timed_ms([t], args.warmup) / median_timed_ms([o], args.warmup)
                                for t, o in zip(theirs, ours)]
                rows.append((shape, dtype, comp, dt, tokens / dt * 1000,
                             statistics.median(m for r in ours for m in r["mfu"][args.warmup:]),
                             max(r["rss_gib"] for r in ours), sum(ours[0]["dt_ms"][:args.warmup]) / 1000,
                             base_dt, statistics.median(round_ratios) if theirs else None))
                print(f"  done {shape} {dtype} compile={comp}: {dt:.0f} ms/step"
                      + (f" (against: {base_dt:.0f} ms/step; speed ratio per round "
                         f"{', '.join(f'{r:.3f}' for r in round_ratios)})" if base_dt else ""), flush=True)
        against = " | against ms/step | speed vs against" if args.against else ""
        print(f"\n| shape | dtype | compile | ms/step | tok/s | MFU (vs measured peak) | peak RSS GiB | first {args.warmup} steps s{against} |")
        print("|---|---|---|---|---|---|---|---|" + ("---|---|" if args.against else ""))
        for shape, dtype, comp, dt, tps, mfu, rss, first, base_dt, ratio in rows:
            print(f"| {shape} | {dtype} | {comp} | {dt:.0f} | {tps:,.0f} | {mfu:.1f}% | {rss:.2f} | {first:.1f} |"
                  + (f" {base_dt:.0f} | {ratio:.3f}x |" if args.against else ""))
        keys = ("shape", "dtype", "compile", "ms_per_step", "tok_per_s", "mfu_pct", "peak_rss_gib", "first_steps_s",
                "against_ms_per_step", "speed_vs_against")
        results["throughput"] = [dict(zip(keys, row)) for row in rows]

    if args.only != "none" and args.interleave_rounds > 0:
        source = extra[extra.index("--data") + 1] if "--data" in extra else "auto"
        results["interleaved_compile"] = []
        print(f"\ncompile speed-up, interleaved ({args.interleave_rounds} eager/compiled step pairs, one process):")
        for shape in args.shapes.split(","):
            r = interleaved_compile_speedup(shape, args.interleave_rounds, source, args.profile)
            results["interleaved_compile"].append(r)
            print(f"  {shape} {r['dtype']}: eager {r['eager_s'] * 1000:.0f} ms, compiled {r['compiled_s'] * 1000:.0f} ms "
                  f"per step: {r['speedup']:.2f}x (first compiled step {r['first_compiled_step_s']:.0f} s)", flush=True)

    if args.bpb_steps > 0:
        flags = SHAPES["d4 b8"] + ["--num-iterations", str(args.bpb_steps), "--eval-every", "-1",
                                   "--eval-tokens", "262144", *extra]
        runs = {dtype: run_base_train(flags, dtype, workdir, f"bpb_{dtype}.log") for dtype in ("float32", "bfloat16")}
        f32, b16 = runs["float32"]["val_bpb"], runs["bfloat16"]["val_bpb"]
        print(f"\nval bpb after {args.bpb_steps} steps (d4, head dim 64, 8192 tokens/step): fp32 {f32:.4f} "
              f"({runs['float32']['train_min']:.1f} min), bf16 {b16:.4f} ({runs['bfloat16']['train_min']:.1f} min); "
              f"bf16 - fp32 = {100 * (b16 - f32) / f32:+.2f}%")
        results["bpb_equal_steps"] = {"steps": args.bpb_steps, "float32": f32, "bfloat16": b16}

    if args.time_budget > 0:
        flags = ["--depth", "4", "--time-budget", str(args.time_budget), "--eval-every", "-1",
                 "--eval-tokens", "1048576", *extra]
        r = run_base_train(flags, os.environ.get("NANOCHAT_DTYPE", "bfloat16"), workdir, "time_budget.log")
        depth = [value for flag, value in zip(flags, flags[1:]) if flag == "--depth"][-1]   # --extra's wins
        print(f"\n{args.time_budget:g}-minute d{depth} run (defaults{' ' + args.extra if args.extra else ''}): "
              f"{len(r['dt_ms'])} steps, val bpb {r['val_bpb']:.4f}, median {statistics.median(r['dt_ms'])} ms/step; "
              f"log {r['log']}")
        results["time_budget"] = {"minutes": args.time_budget, "depth": int(depth), "steps": len(r["dt_ms"]),
                                  "val_bpb": r["val_bpb"], "median_ms_per_step": statistics.median(r["dt_ms"])}
    if args.options_minutes > 0:
        results["options"] = []
        print(f"\nmodel options, {args.options_minutes:g} minutes each (bf16, compiled; val bpb on 1M tokens):")
        for shape in args.options_shapes.split(","):
            for name, option_flags in OPTIONS.items():
                flags = SHAPES[shape] + ["--time-budget", str(args.options_minutes), "--eval-every", "-1",
                                         "--eval-tokens", "1048576", "--compile", "on", *option_flags, *extra]
                r = run_base_train(flags, "bfloat16", workdir, f"options_{shape.replace(' ', '_')}_{name}.log")
                tokens = int(SHAPES[shape][SHAPES[shape].index("--total-batch-size") + 1])
                row = {"shape": shape, "option": name, "steps": len(r["dt_ms"]), "val_bpb": r["val_bpb"],
                       "tok_per_s": round(tokens / statistics.median(r["dt_ms"][3:]) * 1000)}
                results["options"].append(row)
                print(f"  {shape} {name}: {row['steps']} steps, {row['tok_per_s']:,} tok/s (median after 3), "
                      f"val bpb {row['val_bpb']:.4f}", flush=True)
        print("\n| shape | option | steps | tok/s | val bpb |\n|---|---|---|---|---|")
        for row in results["options"]:
            print(f"| {row['shape']} | {row['option']} | {row['steps']} | {row['tok_per_s']:,} | {row['val_bpb']:.4f} |")
    if args.sweep_steps > 0:
        results["sweep"] = []
        print(f"\nsweep at depth {args.sweep_depth}, {args.sweep_steps} steps each unless a candidate says otherwise "
              f"(bf16, compiled; val bpb on 0.5M tokens; the defaults first, which also warms the compile cache):")
        for candidate in ["", *args.sweep.split("|")]:
            flags = ["--depth", str(args.sweep_depth), "--num-iterations", str(args.sweep_steps), "--eval-every", "-1",
                     "--eval-tokens", "524288", "--compile", "on", *extra, *candidate.split()]
            r = run_base_train(flags, "bfloat16", workdir, f"sweep_{len(results['sweep'])}.log")
            row = {"flags": candidate.strip() or "defaults", "steps": len(r["dt_ms"]), "val_bpb": r["val_bpb"],
                   "median_ms_per_step": statistics.median(r["dt_ms"])}
            results["sweep"].append(row)
            print(f"  {row['flags']}: {row['steps']} steps, {row['median_ms_per_step']} ms/step, "
                  f"val bpb {row['val_bpb']:.4f}", flush=True)
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
