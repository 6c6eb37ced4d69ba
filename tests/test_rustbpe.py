"""
Tests of the rustbpe extension against references: the pure-Python BPE of tests/bpe_reference.py,
Python's `regex` module (for the split), tiktoken (for encoding) and PyPI's rustbpe==0.1.0 (same merges,
run in a cached throwaway venv; skipped if PyPI is unreachable).

    pytest tests/test_rustbpe.py -q          (Rust unit tests: cd rustbpe && cargo test)
"""

import json
import os
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import regex
import rustbpe
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpe_reference as ref
from bpe_reference import GPT4_PATTERN, SPLIT_PATTERN


def real_texts(n_bytes: int) -> list[str]:
    """Python's standard library sources, file by file, up to n_bytes: real text found on every machine."""
    texts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")[: n_bytes - total]
        texts.append(text)
        total += len(text)
        if total >= n_bytes:
            break
    return texts


def random_texts(n: int, seed: int) -> list[str]:
    """Short texts over a small mixed alphabet: many ties, overlaps and multi-byte characters."""
    rng = random.Random(seed)
    alphabet = list("aab cde 12 ,.\n'sé日🙂") + [" the", "ing", "'ll"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def train(texts, vocab_size, **kwargs) -> rustbpe.Tokenizer:
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), vocab_size, **kwargs)
    return tok


def token_bytes(tok) -> list[bytes]:
    return [token for token, _ in tok.get_mergeable_ranks()]


# -----------------------------------------------------------------------------
# Same merges as the pure-Python reference

def test_merges_match_reference_on_random_text():
    texts = random_texts(400, seed=0)
    assert train(texts, 256 + 120).get_merges() == ref.train_bpe(texts, 256 + 120)


@pytest.mark.slow
def test_merges_match_reference_on_real_text():
    texts = real_texts(120_000)
    tok = train(texts, 256 + 120)
    merges = ref.train_bpe(texts, 256 + 120)
    assert tok.get_merges() == merges
    assert token_bytes(tok) == ref.token_bytes(merges)
    assert [rank for _, rank in tok.get_mergeable_ranks()] == list(range(256 + 120))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(alphabet="ab \n'sé1", max_size=20), max_size=8), extra=st.integers(0, 12))
def test_merges_match_reference_on_any_small_corpus(texts, extra):
    vocab_size = 256 + extra
    try:
        want = ref.train_bpe(texts, vocab_size)
    except ValueError:  # too few pairs: rustbpe must refuse too
        with pytest.raises(ValueError, match="too small"):
            train(texts, vocab_size)
        return
    assert train(texts, vocab_size).get_merges() == want


# -----------------------------------------------------------------------------
# Split = Python regex.findall

# Characters assigned in this Python's Unicode tables, plus a pool of the characters the pattern cares
# about (apostrophes and contraction letters, long s, every kind of space and line break, digits).
interesting = st.sampled_from(list("'sSſdDmMtTlLvVrReE aZ09٣½²\t\r\n\x0b\x0c\x1c\x85\xa0\u2028\u3000,.!(_-日é\u0301🙂"))
any_char = st.characters(exclude_categories=("Cs", "Cn"))
mixed_text = st.text(alphabet=st.one_of(interesting, any_char), max_size=60)


@settings(max_examples=400, deadline=None)
@given(text=mixed_text)
def test_split_matches_python_regex(text):
    assert rustbpe.split_text(text) == regex.findall(SPLIT_PATTERN, text)
    assert rustbpe.split_text(text, GPT4_PATTERN) == regex.findall(GPT4_PATTERN, text)
    # The same pattern in a group is not recognised as GPT-4's: this runs the regex engine instead.
    assert rustbpe.split_text(text, f"(?:{SPLIT_PATTERN})") == regex.findall(SPLIT_PATTERN, text)


def test_split_on_real_text_and_a_custom_pattern():
    text = "\n".join(real_texts(200_000))
    assert rustbpe.split_text(text) == regex.findall(SPLIT_PATTERN, text)
    assert rustbpe.split_text("ab12 cd", r"[a-z]+") == ["ab", "cd"]


# -----------------------------------------------------------------------------
# Encode / decode

@pytest.fixture(scope="module")
def trained():
    return train(real_texts(300_000) + random_texts(200, seed=1), 1024)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80) | mixed_text)
def test_encode_decode_round_trip(trained, text):
    ids = trained.encode(text)
    assert trained.decode(ids) == text.encode("utf-8")
    assert all(0 <= i < trained.vocab_size for i in ids)


def test_encode_matches_reference_and_tiktoken(trained):
    texts = real_texts(400_000)[-3:] + random_texts(50, seed=2) + ["", " ", "naïve café 日本語 12345 🙂🙂"]
    ranks = dict(trained.get_mergeable_ranks())
    assert len(ranks) == trained.vocab_size == 1024  # token bytes are unique
    enc = tiktoken.Encoding(name="rustbpe-test", pat_str=trained.get_pattern(), mergeable_ranks=ranks, special_tokens={})
    merges = trained.get_merges()
    for text in texts:
        ids = trained.encode(text)
        assert ids == enc.encode_ordinary(text)
        assert ids == ref.encode(text, merges)
    assert trained.batch_encode(texts) == [trained.encode(t) for t in texts]
    # It compresses real (unseen) text: more than 2 bytes per token at vocab 1024.
    text = "\n".join(texts[:3])
    assert len(text.encode()) / len(trained.encode(text)) > 2.0


def test_untrained_tokenizer_is_bytes():
    tok = rustbpe.Tokenizer()
    assert tok.vocab_size == 256 and tok.get_merges() == [] and tok.get_pattern() == SPLIT_PATTERN
    assert tok.encode("hé") == list("hé".encode())
    assert tok.decode([104, 195]) == b"h\xc3"  # bytes: a cut multi-byte character is kept as is


# -----------------------------------------------------------------------------
# Errors and determinism

def test_bad_arguments_raise_clear_errors():
    tok = train(["hello world"] * 3, 258)
    before = tok.get_merges()
    with pytest.raises(ValueError, match="vocab_size must be at least 256"):
        tok.train_from_iterator(iter(["abc"]), 255)
    with pytest.raises(TypeError, match="item 1 is int"):
        tok.train_from_iterator(iter(["abc", 7]), 300)
    with pytest.raises(TypeError, match="iterable of str, got int"):
        tok.train_from_iterator(5, 300)
    with pytest.raises(ValueError, match="invalid split pattern"):
        tok.train_from_iterator(iter(["abc"]), 300, pattern="(unclosed")
    with pytest.raises(ValueError, match="buffer_size"):
        tok.train_from_iterator(iter(["abc"]), 300, buffer_size=0)
    with pytest.raises(ValueError, match=r"too small for vocab_size=300.*vocab_size <= 258"):
        tok.train_from_iterator(iter(["abc"]), 300)
    with pytest.raises(ValueError, match="too small"):
        tok.train_from_iterator(iter([]), 257)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate is not text
        tok.train_from_iterator(iter(["\ud800"]), 257)
    assert tok.get_merges() == before  # a failed training leaves the tokenizer as it was
    with pytest.raises(ValueError, match=r"ids\[1\] = 258 is not a token id"):
        tok.decode([1, 258])
    with pytest.raises(ValueError, match="is not a token id"):
        tok.decode([-1])
    assert train(["abc"], 256).get_merges() == []  # no merges asked: fine even on little text


@pytest.mark.subprocess
def test_deterministic_across_buffering_order_and_threads(tmp_path):
    texts = real_texts(150_000) + random_texts(300, seed=3)
    merges = train(texts, 700).get_merges()
    assert train(texts, 700, buffer_size=7).get_merges() == merges
    assert train(reversed(texts), 700, buffer_size=1000).get_merges() == merges
    # Another process, one thread, another hash seed.
    corpus = tmp_path / "texts.json"
    corpus.write_text(json.dumps(texts))
    code = ("import json, sys, rustbpe; t = rustbpe.Tokenizer(); "
            "t.train_from_iterator(json.load(open(sys.argv[1])), 700); print(json.dumps(t.get_merges()))")
    env = dict(os.environ, RAYON_NUM_THREADS="1", PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code, str(corpus)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert [tuple(m) for m in json.loads(out)] == merges


# -----------------------------------------------------------------------------
# Same merges as PyPI rustbpe 0.1.0

@pytest.fixture(scope="module")
def pypi_available():
    try:
        ref.pypi_rustbpe_python()
    except (ref.PyPIUnavailable, subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"PyPI rustbpe 0.1.0 is not installable here, so it cannot be compared: {e}")


@pytest.mark.parametrize("pattern", [SPLIT_PATTERN, GPT4_PATTERN], ids=["digits1-2", "gpt4"])
@pytest.mark.network
def test_merges_match_pypi_rustbpe(pypi_available, pattern):
    texts = real_texts(1_500_000) + random_texts(500, seed=4)
    ours = token_bytes(train(texts, 2048, pattern=pattern))
    assert ours == ref.run_pypi_rustbpe(texts, 2048, pattern)


@pytest.mark.subprocess
def test_training_memory_does_not_grow_with_the_corpus():
    # ~280 MB of text streamed through the trainer: each text must be freed once copied into a buffer
    # (pyo3 would otherwise keep every one alive until training ends).
    code = (
        "import re, rustbpe\n"
        "texts = (('word%d ' % i) * 200 for i in range(200_000))\n"
        "rustbpe.Tokenizer().train_from_iterator(texts, 300)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) pytest parent across fork + exec
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)\n"
    )
    peak_mib = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert peak_mib < 150, f"peak RSS {peak_mib} MiB while streaming ~280 MB of text"
