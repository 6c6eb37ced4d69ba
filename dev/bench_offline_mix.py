"""
Offline pretraining mix benchmark: the same short pipeline on several offline mixes, side by side. For each
mix (by default 'previous', the weights before the Wikipedia, news and country sources, then 'default' and
'knowledge-heavy', see offline_text.MIXES), in a base dir of its own that shares the tokenizer and the package
cache of your base dir (nothing is downloaded again, and the same tokenizer makes bpb comparable). Every mix gets the same cleaned documents
(offline_text.FORMAT_VERSION): what is measured is the weights.

  1. build the offline shards of that mix        python -m nanochat.dataset --offline --mix MIX
  2. pretrain                                    python -m scripts.base_train --depth 4 --time-budget MINUTES
  3. val bpb on the validation shard (all sources: the same documents for every mix) and on the held-out prose
     (<offline_data>/prose, see nanochat/dataset.py), plus a greedy sample of "The capital of France is"
                                                 python -m scripts.base_loss --data offline | --data .../prose
  4. (--pipeline, on by default; skipped if scripts/mid_train.py or scripts/chat_sft.py is missing)
     python -m scripts.mid_train --time-budget X, python -m scripts.chat_sft --time-budget Y, and
     python -m scripts.chat_eval -i sft -a Countries,Wiki,...,SpellingBee --max-problems 200 (the knowledge
     evaluations first: what the mixes are meant to change)

It prints one JSON line per mix ("MIX {...}": bpbs, sample, accuracies with standard errors, minutes per stage)
and a line comparing each later mix with the first ("COMPARISON {...}": differences, and for accuracies
the difference over its standard error). It keeps both cores busy for most of an hour with the defaults (README.md
has measured times): hold /tmp/bench.lock so two benchmarks never share the cores:

    flock /tmp/bench.lock python -m dev.bench_offline_mix                          # the measurement
    flock /tmp/bench.lock python -m dev.bench_offline_mix --minutes 0.1 --no-pipeline --split-tokens 8192  # smoke run
    python -m dev.bench_offline_mix --mixes default --workdir /tmp/mix --keep      # one mix, keep its base dir

Needs a tokenizer in your base dir (python -m scripts.tok_train). Each stage's output is in <workdir>/<mix>/*.log.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from nanochat.common import get_base_dir
from nanochat.offline_text import MIXES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = ("tokenizer", "packages", "eval_bundle", "eval_bundle_offline")   # symlinked from your base dir
PROMPT = "The capital of France is"


def run(stage: str, cmd: list[str], env: dict, workdir: str) -> tuple[str, float]:
    """Run one stage in a subprocess (output to <workdir>/<stage>.log); its output and minutes, or exit."""
    log_path = os.path.join(workdir, f"{stage}.log")
    print(f"  {stage}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    text = open(log_path).read()
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed (exit code {proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}\n"
                         f"(whole log: {log_path})")
    return text, (time.time() - t0) / 60


def base_loss(env: dict, workdir: str, stage: str, data: str, split_tokens: int, samples: bool) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "scripts.base_loss", "--source", "base", "--data", data,
           "--split-tokens", str(split_tokens), "--max-new-tokens", "16" if samples else "0"]
    text, minutes = run(stage, cmd, env, workdir)
    out = {split: float(m.group(1)) for split in ("train", "val")
           if (m := re.search(rf"^{split} bpb: ([\d.]+)", text, re.M))}
    sample = re.search(rf"^{re.escape(repr(PROMPT))} -> (.*)$", text, re.M)
    if sample:
        out["sample"] = sample.group(1)
    return out, minutes


def bench_mix(mix: str, args, root: str) -> dict:
    """The whole pipeline for one mix in <root>/<mix>; the measured numbers."""
    workdir = os.path.join(root, mix)
    os.makedirs(workdir, exist_ok=True)
    home = get_base_dir()
    for name in SHARED:
        src, dst = os.path.join(home, name), os.path.join(workdir, name)
        if os.path.exists(src) and not os.path.lexists(dst):
            os.symlink(src, dst)
    if not os.path.exists(os.path.join(workdir, "tokenizer", "tokenizer.pkl")):
        raise SystemExit(f"no tokenizer in {home}/tokenizer: train one first (python -m scripts.tok_train)")
    env = {**os.environ, "NANOCHAT_BASE_DIR": workdir, "NANOCHAT_OFFLINE_MIX": mix, "PYTHONUNBUFFERED": "1"}
    py = [sys.executable, "-m"]
    result = {"mix": mix, "minutes": {}}
    print(f"mix {mix} in {workdir}", flush=True)

    text, result["minutes"]["build"] = run("build", py + ["nanochat.dataset", "--offline", "--mix", mix], env, workdir)
    table = text[text.find(f"mix {mix} "):]
    result["shares"] = {m.group(1): {"raw": round(float(m.group(2)) / 100, 4), "train": round(float(m.group(3)) / 100, 4)}
                        for m in re.finditer(r"^(\S+) +[\d.]+ +[\d,]+ +[\d,]+ +[\d,]+ +([\d.]+)% +[\d,]+ +([\d.]+)%$",
                                             table, re.M) if m.group(1) != "total"}

    text, result["minutes"]["base_train"] = run("base_train", py + [
        "scripts.base_train", "--depth", str(args.depth), "--time-budget", str(args.minutes), "--data", "offline",
        "--eval-tokens", str(args.split_tokens)], env, workdir)
    steps = re.search(r"^done: (\d+) steps", text, re.M)
    result["base_steps"] = int(steps.group(1)) if steps else None

    everything, result["minutes"]["bpb_all"] = base_loss(env, workdir, "bpb_all", "offline", args.split_tokens, True)
    prose, result["minutes"]["bpb_prose"] = base_loss(env, workdir, "bpb_prose", os.path.join(
        workdir, "offline_data", "prose"), args.split_tokens, False)
    result.update(val_bpb=everything.get("val"), train_bpb=everything.get("train"), prose_val_bpb=prose.get("val"),
                  sample=everything.get("sample"))

    missing = [s for s in ("mid_train", "chat_sft") if not os.path.exists(os.path.join(REPO, "scripts", f"{s}.py"))]
    if not args.pipeline:
        result["chat_eval"] = "skipped (--no-pipeline)"
    elif missing:
        print(f"  skipping mid_train, chat_sft and chat_eval: scripts/{missing[0]}.py does not exist yet", flush=True)
        result["chat_eval"] = f"skipped (no scripts/{missing[0]}.py)"
    else:
        _, result["minutes"]["mid_train"] = run("mid_train", py + [
            "scripts.mid_train", "--time-budget", str(args.mid_minutes)], env, workdir)
        _, result["minutes"]["chat_sft"] = run("chat_sft", py + [
            "scripts.chat_sft", "--time-budget", str(args.sft_minutes)], env, workdir)
        text, result["minutes"]["chat_eval"] = run("chat_eval", py + [
            "scripts.chat_eval", "-i", "sft", "-a", args.tasks, "--max-problems", str(args.max_problems)],
            env, workdir)
        written = re.search(r"^results written to (.*)$", text, re.M)
        report = json.load(open(written.group(1))) if written else {}
        result["chat_eval"] = {name: {"accuracy": t["accuracy"], "stderr": t["stderr"], "n": t.get("n")}
                               for name, t in report.get("tasks", {}).items()}
        if report.get("chatcore"):
            result["chat_eval"]["ChatCORE"] = {"accuracy": report["chatcore"]["value"],
                                               "stderr": report["chatcore"]["stderr"]}
    result["minutes"] = {k: round(v, 2) for k, v in result["minutes"].items()}
    return result


def compare(old: dict, new: dict) -> dict:
    """new - old for each bpb (lower is better) and each accuracy (higher is better, with its z score)."""
    out = {"old": old["mix"], "new": new["mix"]}
    for key in ("val_bpb", "prose_val_bpb", "train_bpb"):
        if old.get(key) is not None and new.get(key) is not None:
            out[key] = round(new[key] - old[key], 4)
    if isinstance(old.get("chat_eval"), dict) and isinstance(new.get("chat_eval"), dict):
        for name in old["chat_eval"].keys() & new["chat_eval"].keys():
            a, b = old["chat_eval"][name], new["chat_eval"][name]
            diff, err = b["accuracy"] - a["accuracy"], math.hypot(a["stderr"], b["stderr"])
            out[name] = {"diff": round(diff, 4), "stderr": round(err, 4), "z": round(diff / err, 2) if err else None}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="Offline pretraining mixes side by side: bpb (all, prose) and chat_eval "
                                            "after the same short pipeline")
    p.add_argument("--mixes", default="previous,default,knowledge-heavy", help=f"comma-separated mixes of {', '.join(MIXES)}; each "
                                                              "later one is compared with the first")
    p.add_argument("--minutes", type=float, default=8, help="base_train --time-budget (minutes of training steps)")
    p.add_argument("--depth", type=int, default=4, help="base_train --depth")
    p.add_argument("--split-tokens", type=int, default=262144, help="tokens per bpb evaluation (base_train's final "
                                                                     "eval and each base_loss split)")
    p.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                   help="after pretraining: mid_train, chat_sft and chat_eval (--no-pipeline: stop at bpb)")
    p.add_argument("--mid-minutes", type=float, default=4, help="mid_train --time-budget")
    p.add_argument("--sft-minutes", type=float, default=3, help="chat_sft --time-budget")
    p.add_argument("--tasks", default="Countries,Wiki,Countries-trained,Wiki-trained,ARC-Easy,MMLU,SpellingBee",
                   help="chat_eval -a")
    p.add_argument("--max-problems", type=int, default=200, help="chat_eval --max-problems (per task)")
    p.add_argument("--workdir", default="", help="folder for the per-mix base dirs (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (checkpoints, shards, logs) at the end")
    args = p.parse_args(argv)
    mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    unknown = [m for m in mixes if m not in MIXES]
    if unknown or not mixes:
        p.error(f"--mixes: unknown mix {unknown[0] if unknown else '(none)'}; choose from {', '.join(MIXES)}")
    if args.minutes <= 0:
        p.error("--minutes must be > 0")

    root = args.workdir or tempfile.mkdtemp(prefix="bench_offline_mix_")
    os.makedirs(root, exist_ok=True)
    print(f"mixes {', '.join(mixes)}: depth {args.depth}, {args.minutes} min of pretraining"
          + (f", then mid_train {args.mid_minutes} min, chat_sft {args.sft_minutes} min, chat_eval {args.tasks} "
             f"(max {args.max_problems} problems)" if args.pipeline else ", no pipeline") + f"; work dir {root}")
    results = []
    try:
        for mix in mixes:
            results.append(bench_mix(mix, args, root))
            print("MIX " + json.dumps(results[-1]), flush=True)
    except BaseException:
        print(f"work dir kept for its logs: {root}", flush=True)
        raise
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    for later in results[1:]:
        print("COMPARISON " + json.dumps(compare(results[0], later)), flush=True)
    return results


if __name__ == "__main__":
    main()
