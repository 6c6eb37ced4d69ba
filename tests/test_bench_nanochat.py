"""
dev/bench_nanochat.py's set-up for public nanochat: its base dir gets our shards and exactly our tokenizer, and its
step lines are parsed. (The timing itself needs a checkout of public nanochat: a benchmark, not a test.)
"""

import os
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import tiktoken
import torch

from dev.bench_nanochat import THEIR_STEP_RE, find_checkout, their_base_dir
from nanochat.tokenizer import get_tokenizer


def test_their_base_dir_has_our_shards_and_our_tokenizer(base_dir):
    shards = base_dir / "shards"
    shards.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"text": [f"document {i}"]}), shards / f"shard_{i:05d}.parquet")
    theirs = their_base_dir(str(base_dir / "work"), str(shards))
    linked = sorted(os.listdir(os.path.join(theirs, "base_data_climbmix")))
    assert linked == [f"shard_{i:05d}.parquet" for i in range(3)]            # the last is val for both codes
    with open(os.path.join(theirs, "tokenizer", "tokenizer.pkl"), "rb") as f:
        enc = pickle.load(f)                                                  # what their tokenizer.py loads
    ours = get_tokenizer()
    assert isinstance(enc, tiktoken.Encoding)
    text = "Hello world, 12345 tokens!\n  indented"
    assert enc.encode_ordinary(text) == ours.encode(text)
    assert enc.encode("<|bos|><|assistant_end|>", allowed_special="all") == \
        [ours.encode_special("<|bos|>"), ours.encode_special("<|assistant_end|>")]
    assert torch.equal(torch.load(os.path.join(theirs, "tokenizer", "token_bytes.pt")), ours.token_bytes())


def test_their_step_line_is_parsed():
    line = ("step 00012/00040 (30.00%) | loss: 6.123456 | lrm: 1.00 | dt: 1180.52ms | tok/sec: 6,939 | "
            "bf16_mfu: 30.12 | epoch: 1 | total time: 0.25m | eta: 0.6m")
    m = THEIR_STEP_RE.match(line)
    assert m and m.group(1) == "00012" and float(m.group(2)) == 1180.52 and m.group(3) == "6,939"


def test_no_checkout_means_ours_alone(tmp_path, capsys):
    assert find_checkout("") is None
    assert find_checkout(str(tmp_path)) is None and "measuring ours alone" in capsys.readouterr().out
