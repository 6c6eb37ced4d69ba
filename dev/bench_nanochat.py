"""
Side by side with public nanochat: pretraining tok/s and decode tok/s of its code and ours, in one run on this host.
It needs a checkout of public nanochat and a virtual environment for it (this project ships none of its code):

    cd /work && git clone https://github.com/karpathy/nanochat nanochat-public      # measured: HEAD 92d63d4
    python3 -m venv nanochat-public/.venv      # from outside the checkout: pyenv follows its .python-version (3.10)
    nanochat-public/.venv/bin/pip install torch==2.13.0      # alone first, the same CPU build as ours
    nanochat-public/.venv/bin/pip install numpy pyarrow psutil filelock tiktoken rustbpe wandb requests jinja2
    flock /tmp/bench.lock python -m dev.bench_nanochat --nanochat /work/nanochat-public
    python -m dev.bench_nanochat --skip-train          # decode only;  --skip-decode: pretraining only

Without --nanochat (or with a path that holds no checkout) it says so and measures ours alone.

Pretraining: both base_trains run on the same shards (ours; theirs reads them through symlinks in its own base
dir) with the same tokenizer (ours, re-pickled as the tiktoken Encoding its code loads), at public nanochat's best
CPU settings: NANOCHAT_DTYPE=bfloat16, its torch.compile, head dim 64, full attention (--window-pattern L), sequence
512. Ours runs with bf16 and --compile on. Shapes (as in the Speed issue): depth 4, device batch 8, 8,192 tokens per
step, median over steps 10-40; depth 6, device batch 32, 16,384 tokens per step, median over steps 8-24. The two
take turns in ABBA order for --rounds rounds; the ratio per shape is the median of the per-round ratios (each pair
ran back to back, so a slow moment of the shared host hits both sides of one ratio, not one side of all).

Decoding: batch 1 (greedy) and batch 8 (temperature 1, top-k 50, one prompt) of a freshly initialised model
(speed does not depend on the weights), vocab 8192, context 512, a 32-token prompt, 128 tokens, stop tokens
disabled so every run decodes exactly that many. Theirs: its Engine, fp32 and bf16 (NANOCHAT_DTYPE), 1 and 2
threads, the best of the four per cell; ours: dev/bench_infer's int8 + compiled decode (the fastest variant) with
1 and 2 threads, the best. Every cell is the median of --repeats runs after a warm-up.

The last line is all results as JSON ("RESULTS {...}").
"""

import argparse
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile

from dev.bench_train import SHAPES, run_base_train
from nanochat.common import get_base_dir
from nanochat.dataset import choose_source, list_parquet_files, offline_data_dir, hub_data_dir
from nanochat.tokenizer import get_tokenizer

# name -> (dev/bench_train's shape: the same flags on both sides, steps, first timed step)
TRAIN_SHAPES = {"d4": ("d4 b8", 40, 10), "d6": ("d6 b32", 24, 8)}
THEIR_STEP_RE = re.compile(r"^step (\d+)/\d+ .*\| dt: ([\d.]+)ms \| tok/sec: ([\d,]+) \| bf16_mfu: ([\d.]+)")
DECODE = dict(vocab_size=8192, seq_len=512, prompt_tokens=32, decode_tokens=128)
DECODE_HEAD_DIM = 128    # theirs is built with it; ours (dev/bench_infer) uses config_from_depth's default, the same

# Their Engine, timed the way dev/bench_infer times ours; run with their interpreter inside their checkout.
THEIR_DECODE_SCRIPT = r'''
import json, statistics, sys, time
import torch
from nanochat.engine import Engine
from nanochat.gpt import GPT, GPTConfig
depth, threads, repeats, vocab, seq, prompt_n, decode_n, head_dim = map(int, sys.argv[1:9])
torch.set_num_threads(threads)
torch.manual_seed(0)
dim = ((depth * 64 + head_dim - 1) // head_dim) * head_dim
config = GPTConfig(sequence_len=seq, vocab_size=vocab, n_layer=depth, n_head=dim // head_dim,
                   n_kv_head=dim // head_dim, n_embd=dim, window_pattern="L")
with torch.device("meta"):
    model = GPT(config)
model.to_empty(device="cpu")
model.init_weights()
model.eval()
class NoStops:                      # the Engine asks for its special ids; none of them is ever sampled
    def encode_special(self, s): return -1
    def get_bos_token_id(self): return -1
engine = Engine(model, NoStops())
prompt = torch.randint(0, 256, (prompt_n,)).tolist()
def timed(batch):
    kwargs = dict(temperature=0.0) if batch == 1 else dict(temperature=1.0, top_k=50)
    start, first, n = time.perf_counter(), None, 0
    for column, _ in engine.generate(prompt, num_samples=batch, max_tokens=decode_n, **kwargs):
        n += 1
        if first is None:
            first = time.perf_counter()
    return (n - 1) * batch / (time.perf_counter() - first)
out = {}
for batch in (1, 8):
    timed(batch)
    out[f"b{batch}"] = statistics.median(timed(batch) for _ in range(repeats))
print(json.dumps(out))
'''


def shape_flags(shape: str) -> list[str]:
    """The shape's base_train flags (depth, head dim, seq len, device batch, total batch) and its step count: both
    base_trains take these flag names."""
    name, steps, _ = TRAIN_SHAPES[shape]
    return SHAPES[name] + ["--num-iterations", str(steps)]


def shape_value(shape: str, flag: str) -> int:
    flags = SHAPES[TRAIN_SHAPES[shape][0]]
    return int(flags[flags.index(flag) + 1])


def their_env(**extra) -> dict:
    """Environment for their interpreter: without our PYTHONPATH (their checkout's packages must win)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def find_checkout(path: str) -> str | None:
    """The checkout of public nanochat at path, or None (with the reason printed)."""
    if not path:
        print("no --nanochat checkout given: measuring ours alone (see the docstring for the baseline's set-up)")
        return None
    if not os.path.isfile(os.path.join(path, "scripts", "base_train.py")) or \
            not os.path.isfile(os.path.join(path, "nanochat", "engine.py")):
        print(f"--nanochat {path}: no public nanochat checkout there (scripts/base_train.py, nanochat/engine.py): "
              "measuring ours alone")
        return None
    return path


def data_dir_of(data: str) -> str:
    """The shard folder of a --data choice (offline, hub, or a folder given as a path)."""
    return {"offline": offline_data_dir(), "hub": hub_data_dir()}.get(data, data)


def their_base_dir(workdir: str, data_dir: str) -> str:
    """A base dir for their code: our shards under the name it reads (base_data_climbmix/, the last shard is val
    for both) and our tokenizer as the pickled tiktoken Encoding their tokenizer.py loads."""
    base = os.path.join(workdir, "theirs")
    shards = os.path.join(base, "base_data_climbmix")
    os.makedirs(shards, exist_ok=True)
    for path in list_parquet_files(data_dir):
        os.symlink(path, os.path.join(shards, os.path.basename(path)))
    tok_dir = os.path.join(base, "tokenizer")
    os.makedirs(tok_dir)
    with open(os.path.join(tok_dir, "tokenizer.pkl"), "wb") as f:
        pickle.dump(get_tokenizer().enc, f)
    os.symlink(os.path.join(get_base_dir(), "tokenizer", "token_bytes.pt"), os.path.join(tok_dir, "token_bytes.pt"))
    return base


def run_their_base_train(checkout: str, python: str, base: str, shape: str, log_path: str) -> list[float]:
    """Their base_train at its best CPU settings; -> tok/s of every step."""
    cmd = [python, "-m", "scripts.base_train", *shape_flags(shape), "--window-pattern", "L", "--eval-every", "-1",
           "--core-metric-every", "-1", "--sample-every", "-1", "--device-type", "cpu", "--model-tag", "bench"]
    env = their_env(NANOCHAT_BASE_DIR=base, NANOCHAT_DTYPE="bfloat16", PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=env, cwd=checkout, stdout=log, stderr=subprocess.STDOUT)
    text = open(log_path).read()
    rates = [float(m.group(3).replace(",", "")) for line in text.splitlines() if (m := THEIR_STEP_RE.match(line))]
    if proc.returncode != 0 or not rates:
        raise SystemExit(f"their base_train failed ({' '.join(cmd)}, in {checkout}); log {log_path}:\n"
                         f"{text[-3000:]}")
    return rates


def run_our_base_train(data: str, workdir: str, shape: str, log_name: str) -> dict:
    tokens = shape_value(shape, "--total-batch-size")
    flags = shape_flags(shape) + ["--eval-every", "-1", "--eval-tokens", "4096", "--compile", "on", "--data", data]
    run = run_base_train(flags, "bfloat16", workdir, log_name)
    return {"tok_s": [tokens / ms * 1000 for ms in run["dt_ms"]], "mfu": run["mfu"]}


def compare_training(args, checkout, workdir, data) -> list[dict]:
    base = their_base_dir(workdir, data_dir_of(data)) if checkout else None
    rows = []
    for shape in args.shapes.split(","):
        first = TRAIN_SHAPES[shape][2]
        ours, theirs, ratios = [], [], []
        for i in range(args.rounds):
            def mine():
                run = run_our_base_train(data, workdir, shape, f"ours_{shape}_{i}.log")
                ours.append((statistics.median(run["tok_s"][first:]), statistics.median(run["mfu"][first:])))

            def public():
                rates = run_their_base_train(checkout, args.python, base, shape,
                                             os.path.join(workdir, f"theirs_{shape}_{i}.log"))
                theirs.append(statistics.median(rates[first:]))
            for run in ([mine, public] if i % 2 == 0 else [public, mine]) if checkout else [mine]:   # ABBA
                run()
            if checkout:
                ratios.append(ours[-1][0] / theirs[-1])
            print(f"  {shape} round {i + 1}: ours {ours[-1][0]:,.0f} tok/s (MFU {ours[-1][1]:.1f}%)"
                  + (f", public nanochat {theirs[-1]:,.0f} tok/s: {ratios[-1]:.2f}x" if checkout else ""), flush=True)
        rows.append({"shape": shape, "ours_tok_s": statistics.median(o[0] for o in ours),
                     "ours_mfu_pct": statistics.median(o[1] for o in ours),
                     "theirs_tok_s": statistics.median(theirs) if theirs else None,
                     "ratio": statistics.median(ratios) if ratios else None, "round_ratios": ratios})
    return rows


def our_decode(depth: int, threads: int, repeats: int) -> dict:
    variant = "int8+compile-2t" if threads == 2 else "int8+compile"
    cmd = [sys.executable, "-m", "dev.bench_infer", "--worker", str(depth), variant, "--threads", str(threads),
           f"--repeats={repeats}", *(f"--{k.replace('_', '-')}={v}" for k, v in DECODE.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"our decode benchmark failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"b1": row["tok_s_b1_median"], "b8": row["tok_s_b8_median"]}


def their_decode(checkout, python, depth, threads, dtype, repeats, head_dim) -> dict | None:
    env = their_env(NANOCHAT_DTYPE=dtype)
    argv = [depth, threads, repeats, DECODE["vocab_size"], DECODE["seq_len"], DECODE["prompt_tokens"],
            DECODE["decode_tokens"], head_dim]
    proc = subprocess.run([python, "-c", THEIR_DECODE_SCRIPT, *map(str, argv)], capture_output=True, text=True,
                          cwd=checkout, env=env)
    if proc.returncode != 0:
        print(f"  note: their Engine failed at depth {depth}, {threads} threads, {dtype}:\n{proc.stderr[-1500:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_decoding(args, checkout) -> list[dict]:
    rows = []
    for depth in args.decode_depths:
        ours = {t: our_decode(depth, t, args.repeats) for t in (1, 2)}
        theirs = {}
        if checkout:
            for threads in (1, 2):
                for dtype in ("float32", "bfloat16"):
                    r = their_decode(checkout, args.python, depth, threads, dtype, args.repeats, DECODE_HEAD_DIM)
                    if r:
                        theirs[f"{dtype} {threads}t"] = r
        for batch in ("b1", "b8"):
            best_ours = max(ours, key=lambda t: ours[t][batch])
            row = {"depth": depth, "batch": int(batch[1:]), "ours_tok_s": ours[best_ours][batch],
                   "ours_setting": f"int8+compile {best_ours}t", "ours_all": {f"{t}t": o[batch] for t, o in ours.items()}}
            if theirs:
                best = max(theirs, key=lambda k: theirs[k][batch])
                row.update(theirs_tok_s=theirs[best][batch], theirs_setting=best,
                           theirs_all={k: v[batch] for k, v in theirs.items()},
                           ratio=ours[best_ours][batch] / theirs[best][batch])
            rows.append(row)
            print(f"  decode depth {depth} batch {row['batch']}: ours {row['ours_tok_s']:,.0f} tok/s "
                  f"({row['ours_setting']})" + (f", public nanochat {row['theirs_tok_s']:,.0f} ({row['theirs_setting']})"
                                                 f": {row['ratio']:.2f}x" if "ratio" in row else ""), flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description="Pretraining and decode speed side by side with public nanochat")
    p.add_argument("--nanochat", default="", help="path of a public nanochat checkout (empty = ours alone)")
    p.add_argument("--python", default="", help="its virtual environment's python (default: <checkout>/.venv/bin/python)")
    p.add_argument("--shapes", default="d4,d6", help=f"pretraining shapes, of {list(TRAIN_SHAPES)}")
    p.add_argument("--rounds", type=int, default=2, help="pretraining runs per side and shape, in ABBA order")
    p.add_argument("--decode-depths", type=int, nargs="+", default=[4, 6])
    p.add_argument("--repeats", type=int, default=5, help="timed decode runs per cell (the median is kept)")
    p.add_argument("--data", default="auto", help="pretraining shards: auto, offline, hub or a folder of parquet")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-decode", action="store_true")
    args = p.parse_args()
    checkout = find_checkout(args.nanochat)
    if checkout:
        args.python = args.python or os.path.join(checkout, ".venv", "bin", "python")
        if not os.access(args.python, os.X_OK):
            raise SystemExit(f"error: no python at {args.python}: make the baseline's venv (see the docstring) or "
                             "pass --python")
        commit = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
        print(f"baseline: public nanochat at {checkout} (commit {commit}), python {args.python}")
    data = choose_source(args.data, verbose=False)
    if not list_parquet_files(data_dir_of(data)):
        raise SystemExit(f"error: no parquet shards in {data_dir_of(data)}: build them first "
                         "(python -m nanochat.dataset --offline, or bash train_cpu.sh)")
    workdir = tempfile.mkdtemp(prefix="bench_nanochat_")
    for folder in ("tokenizer", "offline_data", "base_data"):     # our base_train reads them from its base dir
        if os.path.isdir(os.path.join(get_base_dir(), folder)):
            os.symlink(os.path.join(get_base_dir(), folder), os.path.join(workdir, folder))
    print(f"logs in {workdir}")
    results = {"baseline_commit": commit if checkout else None, "data": data}
    if not args.skip_train:
        results["train"] = compare_training(args, checkout, workdir, data)
    if not args.skip_decode:
        results["decode"] = compare_decoding(args, checkout)

    print("\n| pretraining (seq 512, bf16 + compile) | public nanochat tok/s | ours tok/s | ours MFU | ratio |")
    print("|---|---|---|---|---|")
    for r in results.get("train", []):
        depth, batch, tokens = (shape_value(r["shape"], f) for f in ("--depth", "--device-batch-size",
                                                                      "--total-batch-size"))
        theirs = f"{r['theirs_tok_s']:,.0f}" if r["theirs_tok_s"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(f"| depth {depth}, head dim 64, device batch {batch}, {tokens:,} tokens/step | {theirs} | "
              f"{r['ours_tok_s']:,.0f} | {r['ours_mfu_pct']:.1f}% | {ratio} |")
    print("\n| decode (32-token prompt, 128 tokens) | public nanochat tok/s (setting) | ours tok/s (setting) | ratio |")
    print("|---|---|---|---|")
    for r in results.get("decode", []):
        theirs = f"{r['theirs_tok_s']:,.0f} ({r['theirs_setting']})" if "ratio" in r else "-"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        print(f"| depth {r['depth']}, batch {r['batch']} | {theirs} | {r['ours_tok_s']:,.0f} ({r['ours_setting']}) | "
              f"{ratio} |")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
