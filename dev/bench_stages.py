"""
Speed of every training stage on the same model: base_train, mid_train and chat_sft through the shared loop
(tokens/s, which should stay within 10% of base_train's), and chat_rl's rollouts/s at 8 samples per question.
Each stage runs as its real script in a subprocess (real data, loader, optimizer), eager (--compile off, so the
loops are compared and not the compiler), in a temporary base dir that borrows <base>/tokenizer and the offline
data. Rounds interleave the stages (base, mid, sft, rl, base, ...), and the ratio to base_train is taken per round,
then the median over rounds: a busy neighbour slows a round, not one stage. Needs a tokenizer and offline data.
Hold /tmp/bench.lock so two benchmarks never share the cores:

    flock /tmp/bench.lock python -m dev.bench_stages                   # depth 4, 8 x 512, 3 rounds
    flock /tmp/bench.lock python -m dev.bench_stages --depth 6 --rounds 5 --steps 30

chat_sft rows are one conversation each, padded to the longest of the batch (shorter than 512): its tok/s counts
those padded positions, as the step line does. The last line is all results as JSON ("RESULTS {...}").
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

from nanochat.common import get_base_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK_RE = re.compile(r"^step (\d+) .*\| dt (\d+)ms \| tok/s ([\d,]+)")
RL_RE = re.compile(r"^step (\d+) .*\| rollouts/s ([\d.]+)")


def run(module: str, flags: list[str], workdir: str, log_name: str) -> str:
    env = {**os.environ, "NANOCHAT_BASE_DIR": workdir, "PYTHONUNBUFFERED": "1"}
    log_path = os.path.join(workdir, log_name)
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, "-m", module, *flags], env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=REPO)
    text = open(log_path).read()
    if proc.returncode != 0:
        raise SystemExit(f"{module} failed (log {log_path}):\n{text[-3000:]}")
    return text


def median_after_warmup(text: str, regex, column: int, warmup: int) -> float:
    values = [float(m.group(column).replace(",", "")) for line in text.splitlines() if (m := regex.match(line))]
    if len(values) <= warmup:
        raise SystemExit(f"only {len(values)} step lines (warmup {warmup}): raise --steps")
    return statistics.median(values[warmup:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="steps per stage run (the first --warmup are not timed)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rl-steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    home = get_base_dir()
    workdir = tempfile.mkdtemp(prefix="bench_stages_")
    for name in ("tokenizer", "offline_data", "packages", "eval_bundle_offline"):
        if os.path.exists(os.path.join(home, name)):
            os.symlink(os.path.join(home, name), os.path.join(workdir, name))
    shape = ["--device-batch-size", "8", "--compile", "off", "--eval-every", "-1", "--eval-tokens", "4096",
             "--device-type", "cpu"]
    base_flags = ["--depth", str(args.depth), "--max-seq-len", "512", "--total-batch-size", "8192",
                  "--model-tag", "bench", "--data", "offline", *shape]
    stage_flags = {"mid_train": ["--total-batch-size", "8192", *shape],
                   "chat_sft": ["--examples-per-step", "16", "--chat-eval-every", "-1", *shape]}
    print(f"depth {args.depth}, 8 x 512 rows, {args.steps} steps per run ({args.warmup} warm-up), "
          f"{args.rounds} rounds; work dir {workdir}", flush=True)

    rounds = []
    for r in range(args.rounds):
        row = {}
        text = run("scripts.base_train", base_flags + ["--num-iterations", str(args.steps)], workdir, f"base{r}.log")
        row["base_train"] = median_after_warmup(text, TOK_RE, 3, args.warmup)
        for stage, flags in stage_flags.items():
            text = run(f"scripts.{stage}", flags + ["--num-iterations", str(args.steps)], workdir, f"{stage}{r}.log")
            row[stage] = median_after_warmup(text, TOK_RE, 3, args.warmup)
        text = run("scripts.chat_rl", ["--source", "sft", "--num-iterations", str(args.rl_steps), "--num-samples", "8",
                                       "--eval-every", "-1", "--device-type", "cpu"], workdir, f"rl{r}.log")
        row["chat_rl_rollouts_per_s"] = median_after_warmup(text, RL_RE, 2, 1)
        rounds.append(row)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)

    results = {"depth": args.depth, "rounds": rounds, "tok_per_s_median": {}, "ratio_to_base_median": {}}
    print(f"\n{'stage':<12} {'tok/s (median)':>15} {'/ base_train (median of rounds)':>33}")
    for stage in ("base_train", *stage_flags):
        tok = statistics.median(row[stage] for row in rounds)
        ratio = statistics.median(row[stage] / row["base_train"] for row in rounds)
        results["tok_per_s_median"][stage] = tok
        results["ratio_to_base_median"][stage] = ratio
        print(f"{stage:<12} {tok:>15,.0f} {ratio:>33.3f}")
    rl = statistics.median(row["chat_rl_rollouts_per_s"] for row in rounds)
    results["chat_rl_rollouts_per_s_median"] = rl
    print(f"chat_rl: {rl:.1f} rollouts/s at 8 samples per question (median over rounds)")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
