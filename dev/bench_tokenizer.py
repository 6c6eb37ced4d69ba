"""
Tokenizer-training benchmark: this project's rustbpe vs PyPI rustbpe 0.1.0 (public nanochat's trainer) vs
Hugging Face `tokenizers`, trained side by side on the same text with the same split pattern and vocab size.

    flock /tmp/bench.lock python -m dev.bench_tokenizer                  # offline pretraining text, 80M chars
    python -m dev.bench_tokenizer --data my.txt --max-chars 20e6 --vocab-size 4096

Each trainer runs in its own subprocess (so peak RSS is its own): ours in this venv; PyPI rustbpe (which also
imports as `rustbpe`) and `tokenizers` in a cached throwaway venv (tests/bpe_reference.py makes it with pip).
For each it prints a JSON line {trainer, train_s (wall), cpu_s (user+sys), peak_rss_mb, text_rss_mb (RSS with
the text loaded, before training), bytes_per_token (on the validation split), same_as_pypi (merges identical to
PyPI rustbpe's)}, then a table. Data: --data is any source of nanochat.dataset.iter_texts: "offline" (default:
the shards that `python -m nanochat.dataset --offline` builds from registry packages), "hub", or a path.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINERS = ("ours", "pypi", "hf")
# The project's split pattern (nanochat/tokenizer.py SPLIT_PATTERN); all three trainers use it.
PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""


# -----------------------------------------------------------------------------
# Worker: one trainer in its own process. Imports nothing but the standard library at the top, because it
# also runs in the throwaway venv.

def read_jsonl(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MB. Not getrusage's ru_maxrss: that one
    survives exec, so a child would report the parent's peak if it was higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")


def train_rustbpe(texts, vocab_size):
    import rustbpe
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), vocab_size, pattern=PATTERN)
    ranks = sorted(tok.get_mergeable_ranks(), key=lambda t: t[1])
    return (lambda batch: tok.batch_encode(batch)), [bytes(token).hex() for token, _ in ranks]


def train_hf(texts, vocab_size):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    # Byte-level BPE with the same split: regex chunks first, then bytes mapped to printable characters.
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=0, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return (lambda batch: [e.ids for e in tok.encode_batch(batch, add_special_tokens=False)]), None


def worker(name: str, corpus: Path, vocab_size: int, out: Path):
    texts = read_jsonl(corpus / "train.jsonl")
    text_rss = rss_mb("VmRSS")
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    encode_batch, tokens = (train_hf if name == "hf" else train_rustbpe)(texts, vocab_size)
    t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    peak_rss = rss_mb("VmHWM")
    val = read_jsonl(corpus / "val.jsonl")
    n_tokens = sum(len(ids) for ids in encode_batch(val))
    n_bytes = sum(len(t.encode("utf-8")) for t in val)
    from importlib import metadata
    try:
        version = metadata.version("tokenizers" if name == "hf" else "rustbpe")
    except metadata.PackageNotFoundError:
        version = "this repo"  # our rustbpe ships inside the nanochat-cpu wheel
    out.write_text(json.dumps({
        "trainer": name, "version": version, "train_s": round(t1 - t0, 2),
        "cpu_s": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 2),
        "peak_rss_mb": round(peak_rss), "text_rss_mb": round(text_rss),
        "bytes_per_token": round(n_bytes / n_tokens, 4), "tokens": tokens,
    }))


# -----------------------------------------------------------------------------
# Driver

def write_corpus(data: str, max_chars: int, eval_chars: int, corpus: Path) -> tuple[int, int]:
    """Materialise the train and validation texts as JSON lines that every worker reads the same way."""
    from nanochat.dataset import iter_texts
    sizes = []
    for split, limit in (("train", max_chars), ("val", eval_chars)):
        n = 0
        with open(corpus / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for text in iter_texts(data, split, max_chars=limit):
                f.write(json.dumps(text) + "\n")
                n += len(text.encode("utf-8"))
        sizes.append(n)
    return sizes[0], sizes[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="offline",
                        help="text source for nanochat.dataset.iter_texts: offline (default), hub, or a path")
    parser.add_argument("--max-chars", type=float, default=80e6, help="characters of training text (default 80e6)")
    parser.add_argument("--eval-chars", type=float, default=2e6,
                        help="characters of validation text for bytes/token (default 2e6)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="vocabulary size incl. the 256 bytes (default 8192)")
    parser.add_argument("--trainers", default=",".join(TRAINERS), help=f"comma-separated subset of {','.join(TRAINERS)}")
    parser.add_argument("--json-out", default="", help="also write the rows to this JSON-lines file")
    parser.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.corpus), args.vocab_size, Path(args.out))

    trainers = [t for t in args.trainers.split(",") if t]
    unknown = set(trainers) - set(TRAINERS)
    if unknown:
        sys.exit(f"--trainers: unknown {sorted(unknown)}; choose from {','.join(TRAINERS)}")
    sys.path.insert(0, str(ROOT / "tests"))
    import bpe_reference
    pythons = {"ours": sys.executable}
    if {"pypi", "hf"} & set(trainers):
        try:
            other = bpe_reference.pypi_rustbpe_python(extra=("tokenizers",))
        except bpe_reference.PyPIUnavailable as e:
            print(f"skipping pypi and hf: {e}", file=sys.stderr)
            trainers = [t for t in trainers if t == "ours"]
        else:
            pythons.update(pypi=other, hf=other)

    with tempfile.TemporaryDirectory(prefix="bench_tokenizer_") as tmp:
        corpus = Path(tmp)
        try:
            n_train, n_val = write_corpus(args.data, int(args.max_chars), int(args.eval_chars), corpus)
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            sys.exit(f"cannot read --data {args.data!r}: {e}")
        print(f"data {args.data}: train {n_train / 1e6:.1f} MB, validation {n_val / 1e6:.1f} MB; "
              f"vocab_size {args.vocab_size}; {os.cpu_count()} CPUs", file=sys.stderr)
        rows = []
        for name in trainers:
            out = corpus / f"{name}.json"
            cmd = [pythons[name], "-m", "dev.bench_tokenizer", "--worker", name, "--corpus", str(corpus),
                   "--vocab-size", str(args.vocab_size), "--out", str(out)]
            print(f"training {name} ...", file=sys.stderr)
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"trainer {name} failed:\n{proc.stderr[-2000:]}")
            rows.append(json.loads(out.read_text()))

    pypi_tokens = next((r["tokens"] for r in rows if r["trainer"] == "pypi"), None)
    for r in rows:
        tokens = r.pop("tokens")
        r["same_as_pypi"] = None if pypi_tokens is None or tokens is None else tokens == pypi_tokens
        r.update(data=args.data, train_mb=round(n_train / 1e6, 1), vocab_size=args.vocab_size)
        print(json.dumps(r))
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    ours = next((r for r in rows if r["trainer"] == "ours"), rows[0])
    names = {"ours": "rustbpe (this repo)", "pypi": "rustbpe 0.1.0 (PyPI)", "hf": "HF tokenizers"}
    print(f"\n| trainer | train s | x ours | CPU s | peak RSS MB | text RSS MB | bytes/token | same merges as PyPI |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {names[r['trainer']]} | {r['train_s']:.1f} | {r['train_s'] / ours['train_s']:.2f} | {r['cpu_s']:.1f} "
              f"| {r['peak_rss_mb']} | {r['text_rss_mb']} | {r['bytes_per_token']:.3f} "
              f"| {'n/a' if r['same_as_pypi'] is None else r['same_as_pypi']} |")


if __name__ == "__main__":
    main()
