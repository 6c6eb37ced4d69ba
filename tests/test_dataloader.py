"""
Tests of nanochat/dataloader.py: batch shapes, BOS-aligned best-fit packing, exact resume, drop accounting, errors.
A byte-level tokenizer (256 byte tokens, no merges) keeps them independent of a trained tokenizer.

    python -m pytest tests/test_dataloader.py -q
"""

import json
import random

import pytest

from nanochat.common import UserError
from nanochat.dataloader import _Buffer, drop_share, tokenizing_distributed_data_loader
from nanochat.dataset import iter_documents


@pytest.fixture(scope="module")
def tok(byte_tok):
    return byte_tok


@pytest.fixture
def corpus(tmp_path):
    """A .txt corpus of documents of varied lengths (some longer than a row), each tagged with its index."""
    rng = random.Random(0)
    docs = [f"<{i}>" + "".join(rng.choice("abcdefgh ") for _ in range(rng.choice([3, 20, 60, 150, 400])))
            for i in range(2000)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs))
    return str(path), {d.strip(): i for i, d in enumerate(docs)}


def take(loader, n):
    out = []
    for _ in range(n):
        x, y, state = next(loader)
        out.append((x.clone(), y.clone(), json.loads(json.dumps(state))))
    return out


def test_batches_are_bos_aligned_and_packed_from_whole_document_prefixes(tok, corpus):
    path, docs = corpus
    B, T = 4, 64
    loader = tokenizing_distributed_data_loader(tok, B, T, "train", source=path, buffer_size=50)
    bos = tok.get_bos_token_id()
    for x, y, state in take(loader, 20):
        assert x.shape == y.shape == (B, T) and x.dtype == y.dtype
        assert (x[:, 1:] == y[:, :-1]).all()
        assert (x[:, 0] == bos).all()  # every row starts at a document start
        for row in range(B):
            ids = x[row].tolist() + [y[row, -1].item()]
            pieces = tok.decode(ids).split("<|bos|>")[1:]
            for piece in pieces[:-1]:
                assert piece in docs  # documents inside a row are whole ...
            assert any(d.startswith(pieces[-1]) for d in docs)  # ... only the last one may be cropped
    assert 0 < drop_share(state) < 1


def test_best_fit_prefers_the_longest_document_that_fits():
    buf = _Buffer()
    for i, n in enumerate([5, 9, 3, 9, 12]):
        buf.add([0, i, 0], list(range(n)))
    assert buf.pop_best_fit(10) == ([0, 3, 0], list(range(9)))  # the later of the two 9s
    assert buf.pop_best_fit(10)[0] == [0, 1, 0]
    assert buf.pop_best_fit(2)[0] == [0, 2, 0]  # none fits: the shortest, to be cropped
    assert len(buf) == 2


def test_resume_is_exact(tok, corpus):
    path, _ = corpus
    B, T, N, k = 3, 48, 30, 11
    straight = take(tokenizing_distributed_data_loader(tok, B, T, "train", source=path, buffer_size=40,
                                                       tokenizer_batch_size=16), N)
    first = take(tokenizing_distributed_data_loader(tok, B, T, "train", source=path, buffer_size=40,
                                                    tokenizer_batch_size=16), k)
    state = first[-1][2]
    resumed = take(tokenizing_distributed_data_loader(tok, B, T, "train", source=path, buffer_size=40,
                                                      tokenizer_batch_size=16, resume_state=state), N - k)
    for (x1, y1, s1), (x2, y2, s2) in zip(straight, first + resumed):
        assert (x1 == x2).all() and (y1 == y2).all()
        assert s1 == s2


def test_loops_over_epochs_and_counts_drops(tok, tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("\n\n".join(["x" * 10] * 30 + ["y" * 100]))  # val = the last documents
    loader = tokenizing_distributed_data_loader(tok, 2, 16, "train", source=str(path), buffer_size=8)
    batches = take(loader, 40)  # more tokens than one pass over the data holds
    state = batches[-1][2]
    assert state["epoch"] >= 1
    # each 11-token document (bos + 10) fits a 17-token row once, the other 6 slots crop the next document
    assert state["tokens_used"] == 40 * 2 * 17
    assert state["tokens_dropped"] > 0 and 0 < drop_share(state) < 1


def test_bad_state_and_empty_corpus(tok, tmp_path, corpus):
    path, _ = corpus
    loader = tokenizing_distributed_data_loader(tok, 2, 32, "train", source=path)
    _, _, state = next(loader)
    with pytest.raises(ValueError, match="max-seq-len"):
        next(tokenizing_distributed_data_loader(tok, 2, 64, "train", source=path, resume_state=state))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n\n" * 1000)
    with pytest.raises(UserError, match="no documents"):
        next(tokenizing_distributed_data_loader(tok, 2, 32, "train", source=str(blank)))


def test_a_rank_without_documents_fails_instead_of_hanging(tok, tmp_path, monkeypatch):
    path = tmp_path / "two.txt"
    path.write_text("x" * 100 + "\n\nv" * 3)  # the last 10% of the bytes are validation: train holds 1 document
    assert len(list(iter_documents(str(path), "train"))) == 1
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="no documents for rank 1 of 2"):
        next(tokenizing_distributed_data_loader(tok, 2, 32, "train", source=str(path)))


def test_close_stops_the_background_thread(tmp_path, tok):
    import threading
    from nanochat.dataloader import _Producer

    def producers():
        return [t for t in threading.enumerate() if isinstance(t, _Producer)]

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"document {i} " * 50 for i in range(2000)))
    loader = tokenizing_distributed_data_loader(tok, 2, 64, "train", source=str(corpus))
    next(loader)
    assert len(producers()) == 1
    loader.close()
    assert producers() == [], "the producer thread outlived close()"
