"""
Shared test fixtures: a byte-level tokenizer (no rustbpe training needed), a small generated corpus, tiny models,
and a base directory holding both, so tests stay hermetic and fast. Also the test markers:

    pytest -m "not slow"      # the fast inner loop: no subprocess, browser, network or long training tests
    pytest                    # everything (what dev/test.sh and CI run)

Tests marked subprocess, browser or network count as slow too.
"""

import random

import pytest
import torch

from nanochat.gpt import GPTConfig, build_model, config_from_depth
from nanochat.tokenizer import SPLIT_PATTERN, Tokenizer

WORDS = ("the cat dog sat on a mat and ran to house big small red blue tree river sun moon he she it was is "
         "under over quickly slowly green old new").split()
SLOW_KINDS = ("subprocess", "browser", "network")


def pytest_configure(config):
    for name, what in [("slow", "longer than a few seconds (left out by -m 'not slow')"),
                       ("subprocess", "starts Python processes (counts as slow)"),
                       ("browser", "drives headless Chromium (counts as slow)"),
                       ("network", "serves or fetches over sockets or registries (counts as slow)")]:
        config.addinivalue_line("markers", f"{name}: {what}")


def pytest_collection_modifyitems(items):
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


def byte_tokenizer() -> Tokenizer:
    """256 byte tokens + the special tokens (265 in all): a real Tokenizer without training one."""
    return Tokenizer(SPLIT_PATTERN, {bytes([i]): i for i in range(256)})


def write_corpus(path, docs: int = 4000, seed: int = 0) -> str:
    """A ~150 KB .txt corpus of generated sentences, one document per paragraph."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))).capitalize() + ".\n\n"
                        for _ in range(docs)))
    return str(path)


def tiny_gpt(vocab_size: int, depth: int = 1, seq_len: int = 32, head_dim: int = 32, n_kv_head: int = -1,
             seed: int = 0, perturb: float = 0.0):
    """A small GPT in fp32 on the CPU. perturb > 0 adds noise to every weight: the zero-initialised lm_head and
    output projections otherwise make every gradient but a few trivial, and every logit equal."""
    torch.manual_seed(seed)
    model = build_model(config_from_depth(depth, vocab_size, seq_len, head_dim=head_dim, n_kv_head=n_kv_head), "cpu")
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(perturb * torch.randn_like(p))
    return model


def random_gpt(std: float = 0.3, seed: int = 0, dtype=torch.float32, **config):
    """A GPT (GPTConfig fields as keywords) with every weight drawn from N(0, std): logits that really depend on
    the input, which the real init (zero output projections) hides."""
    torch.manual_seed(seed)
    model = build_model(GPTConfig(**config), "cpu").to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


@pytest.fixture(scope="session")
def byte_tok() -> Tokenizer:
    return byte_tokenizer()


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread: tiny models run faster without a fork/join per op, and do not stall when other work
    holds a core. Use with pytestmark = pytest.mark.usefixtures("one_thread")."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def base_dir(tmp_path, monkeypatch):
    """NANOCHAT_BASE_DIR = tmp_path/base with a byte tokenizer in it, tmp_path/corpus.txt beside it; fp32 and one
    thread so that results do not depend on the CPU's bf16 support or on a busy neighbour."""
    byte_tokenizer().save(str(tmp_path / "base" / "tokenizer"))
    write_corpus(tmp_path / "corpus.txt")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    monkeypatch.setenv("NANOCHAT_DTYPE", "float32")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path
