"""
Reference implementations that rustbpe is checked against (used by tests/test_rustbpe.py and
dev/bench_tokenizer.py; nothing to run on its own):

1. train_bpe / encode: a small, obviously-correct pure-Python byte-level BPE. It recounts every pair
   from scratch before each merge (slow, but nothing to get wrong), using the `regex` module to split.
2. pypi_rustbpe_python(): a throwaway venv with PyPI's rustbpe==0.1.0 (the public nanochat trainer),
   which imports under the same name as ours, so it is run in a subprocess: run_pypi_rustbpe().
"""

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import regex

# The project's split pattern: GPT-4's, with numbers in groups of 1-2 digits.
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
# GPT-4's own pattern (PyPI rustbpe's default): numbers in groups of 1-3 digits.
GPT4_PATTERN = SPLIT_PATTERN.replace(r"\p{N}{1,2}", r"\p{N}{1,3}")


# -----------------------------------------------------------------------------
# 1. Pure-Python BPE

def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of pair in ids, scanning left to right, by new_id."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(texts, vocab_size: int, pattern: str = SPLIT_PATTERN) -> list[tuple[int, int]]:
    """The merges (left id, right id) in order; merge i makes token 256 + i.
    Each step merges the most frequent adjacent pair; on a tie the smaller pair wins."""
    chunks = Counter(chunk for text in texts for chunk in regex.findall(pattern, text))
    words = [(list(chunk.encode("utf-8")), n) for chunk, n in chunks.items()]
    merges = []
    for new_id in range(256, vocab_size):
        pairs = Counter()
        for ids, n in words:
            for pair in zip(ids, ids[1:]):
                pairs[pair] += n
        if not pairs:
            raise ValueError(f"the text is too small for vocab_size={vocab_size}: no pairs left after {len(merges)} merges")
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        words = [(merge(ids, best, new_id), n) for ids, n in words]
    return merges


def token_bytes(merges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes of every token id: 256 single bytes, then one per merge."""
    vocab = [bytes([b]) for b in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return vocab


def encode(text: str, merges: list[tuple[int, int]], pattern: str = SPLIT_PATTERN) -> list[int]:
    """BPE-encode text: in each chunk, apply the earliest-learned merge present until none is."""
    rank = {pair: 256 + i for i, pair in enumerate(merges)}
    out = []
    for chunk in regex.findall(pattern, text):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            ids = merge(ids, pair, rank[pair])
        out.extend(ids)
    return out


# -----------------------------------------------------------------------------
# 2. PyPI rustbpe 0.1.0 in a throwaway venv

PYPI_RUSTBPE = "rustbpe==0.1.0"
VENV_DIR = Path(os.environ.get("NANOCHAT_TEST_CACHE", Path.home() / ".cache" / "nanochat-test")) / "rustbpe-pypi"


class PyPIUnavailable(RuntimeError):
    """The throwaway venv with PyPI's rustbpe could not be made (no network, no wheel for this platform)."""


def pypi_rustbpe_python(extra: tuple[str, ...] = ()) -> str:
    """Path to the python of a cached venv holding rustbpe==0.1.0 (and the `extra` packages).
    Creates or completes it on first use; raises PyPIUnavailable if pip cannot install."""
    python = VENV_DIR / "bin" / "python"
    wanted = (PYPI_RUSTBPE, *extra)
    marker = VENV_DIR / ("ok-" + "-".join(sorted(w.replace("==", "_") for w in wanted)))
    if marker.exists():
        return str(python)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True, capture_output=True)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PyPIUnavailable(f"pip install {' '.join(wanted)} into {VENV_DIR} failed: {last}")
    marker.touch()
    return str(python)


_PYPI_SCRIPT = """
import json, sys, rustbpe
texts, vocab_size, pattern, out = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3], sys.argv[4]
tok = rustbpe.Tokenizer()
tok.train_from_iterator(iter(texts), vocab_size, pattern=pattern)
json.dump([bytes(token).hex() for token, rank in sorted(tok.get_mergeable_ranks(), key=lambda t: t[1])], open(out, "w"))
"""


def run_pypi_rustbpe(texts: list[str], vocab_size: int, pattern: str = SPLIT_PATTERN) -> list[bytes]:
    """Train PyPI rustbpe 0.1.0 in its venv; return its token bytes in rank order."""
    python = pypi_rustbpe_python()
    with tempfile.TemporaryDirectory() as tmp:
        corpus, out = Path(tmp) / "texts.json", Path(tmp) / "ranks.json"
        corpus.write_text(json.dumps(texts))
        # cwd=tmp so that this repo's rustbpe/ folder cannot shadow the installed package
        subprocess.run([python, "-c", _PYPI_SCRIPT, str(corpus), str(vocab_size), pattern, str(out)],
                       check=True, cwd=tmp, capture_output=True, timeout=300)
        return [bytes.fromhex(h) for h in json.loads(out.read_text())]
