"""
Benchmark: stream a multi-GB .txt file through tok_train and the pretraining loader, and measure peak RSS, to show
that memory stays bounded whatever the file size.

    flock /tmp/bench.lock python -m dev.bench_stream_txt                    # 2 GB file in /tmp (made once)
    flock /tmp/bench.lock python -m dev.bench_stream_txt --size-gb 4 --loader-batches 2000

The file is made from the offline shards (documents repeated in a different seeded order each pass, with a few
invalid UTF-8 bytes sprinkled in). Each stage runs in its own process, which reports its own peak RSS (VmHWM,
through nanochat.common.peak_rss_bytes) as it exits. Not the child's ru_maxrss from wait4: on Linux that survives
fork+exec, so every child would report at least this process's peak (the ~1 GB of documents that make_file holds).
A baseline process that only imports torch and nanochat shows the fixed overhead.
"""

import argparse
import os
import random
import subprocess
import sys
import time

import pyarrow.parquet as pq


def make_file(path: str, size_bytes: int):
    from nanochat.common import atomic_write
    from nanochat.dataset import list_parquet_files, offline_data_dir
    files = list_parquet_files(offline_data_dir())
    if not files:
        sys.exit("no offline shards: run `python -m nanochat.dataset --offline` first")
    docs = [t.encode() for f in files[:-1] for t in pq.read_table(f).column("text").to_pylist()]
    rng, written = random.Random(0), 0
    def write(out):
        nonlocal written
        while written < size_bytes:
            rng.shuffle(docs)
            for doc in docs:
                chunk = doc + (b" \xff\n\n" if rng.random() < 0.001 else b"\n\n")  # some invalid UTF-8
                out.write(chunk)
                written += len(chunk)

    atomic_write(path, write)


# Runs a module or a snippet in this Python and prints its own peak RSS (VmHWM) as the very last line at exit.
CHILD = """
import atexit, runpy, sys
from nanochat.common import peak_rss_bytes
atexit.register(lambda: print(f"PEAK_RSS {peak_rss_bytes()}", flush=True))
kind, what, sys.argv = sys.argv[1], sys.argv[2], sys.argv[2:]
runpy.run_module(what, run_name="__main__") if kind == "-m" else exec(what, {"__name__": "__main__"})
"""


def run(kind: str, what: str, *args: str) -> tuple[float, int, str]:
    """Run `python -m what args` (kind "-m") or a snippet (kind "-c"); return (seconds, the child's own peak RSS
    in bytes, the last lines of its output)."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, what, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    out = proc.stdout
    if proc.returncode != 0 or "PEAK_RSS" not in out:
        sys.exit(f"{kind} {what[:60]} {' '.join(args)} failed:\n{out[-2000:]}")
    out, peak = out.rsplit("PEAK_RSS ", 1)
    lines = [l for l in out.replace("\r", "\n").splitlines() if l.strip() and "/s]" not in l]
    return time.time() - t0, int(peak), "\n".join(lines[-6:])


LOADER_CHILD = """
import sys, time
from nanochat.common import peak_rss_bytes
from nanochat.tokenizer import Tokenizer
from nanochat.dataloader import tokenizing_distributed_data_loader, drop_share
tok = Tokenizer.from_directory(sys.argv[1])
loader = tokenizing_distributed_data_loader(tok, 8, 512, sys.argv[3], source=sys.argv[2])
t0 = time.time()
for i in range(int(sys.argv[4])):
    x, y, state = next(loader)
    if i in (10, int(sys.argv[4]) - 1):
        print(f"batch {i}: peak RSS {peak_rss_bytes() / 2**20:.0f} MiB, read up to byte {state['next'][1]:,}")
print(f"{int(sys.argv[4]) * 8 * 512 / (time.time() - t0):,.0f} tok/s, dropped {drop_share(state):.1%}")
"""


def main():
    parser = argparse.ArgumentParser(description="Peak RSS of tok_train and the loader on a multi-GB .txt file.")
    parser.add_argument("--path", default="/tmp/nanochat_stream_bench.txt", help="the big .txt file (made if missing)")
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of the file to make")
    parser.add_argument("--vocab-size", type=int, default=8192, help="tok_train --vocab-size")
    parser.add_argument("--loader-batches", type=int, default=1000, help="loader batches (8 x 512 tokens) to stream")
    parser.add_argument("--tokenizer-dir", default="/tmp/nanochat_stream_bench_tok", help="where tok_train saves")
    args = parser.parse_args()
    size = int(args.size_gb * 2**30)
    if not os.path.exists(args.path) or os.path.getsize(args.path) < size:
        print(f"making {args.path} ({args.size_gb} GB) ...", flush=True)
        make_file(args.path, size)
    print(f"file: {args.path}, {os.path.getsize(args.path) / 2**30:.2f} GiB")

    sec, rss, _ = run("-c", "import torch, nanochat.dataloader, nanochat.tokenizer")
    print(f"baseline (imports only):       peak RSS {rss / 2**20:6.0f} MiB")
    sec, rss, out = run("-m", "scripts.tok_train", "--data", args.path, "--vocab-size", str(args.vocab_size),
                       "--max-chars", str(10 * size), "--output-dir", args.tokenizer_dir)
    print(f"tok_train on the whole file:   peak RSS {rss / 2**20:6.0f} MiB, {sec:.0f}s\n    "
          + out.replace("\n", "\n    "))
    for split in ("train", "val"):
        sec, rss, out = run("-c", LOADER_CHILD, args.tokenizer_dir, args.path, split, str(args.loader_batches))
        print(f"loader ({split}, {args.loader_batches} batches): peak RSS {rss / 2**20:6.0f} MiB, {sec:.0f}s\n    "
              + out.replace("\n", "\n    "))


if __name__ == "__main__":
    main()
