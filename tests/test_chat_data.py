"""
Chat training data: targets follow the chat mask, the loss and its gradient come only from supervised tokens,
long conversations are truncated and counted, packing uses every conversation once, batches are the same for
the same seed and resume exactly.

    pytest tests/test_chat_data.py -q
"""

import itertools

import pytest
import torch

from conftest import tiny_gpt
from nanochat.chat_data import IGNORE_INDEX, ChatData, pack_rows
from nanochat.common import UserError
from nanochat.gpt import chunked_cross_entropy
from tasks.common import Task, TaskMixture


class Chats(Task):
    """Hand-made conversations: 'q<i>' -> 'a<i>' with a calculator call, plus one very long chat."""
    name = "Chats"
    eval_split = None

    def __init__(self, n: int = 12, long_one: bool = False):
        super().__init__("train")
        self.n, self.long_one = n, long_one

    def num_examples(self):
        return self.n + self.long_one

    def get_example(self, i):
        if i == self.n:
            return {"messages": [{"role": "user", "content": "tell me a long story " * 20},
                                 {"role": "assistant", "content": "once upon a time " * 20}]}
        parts = [{"type": "text", "text": f"a{i} is "}, {"type": "python", "text": f"{i}+1"},
                 {"type": "python_output", "text": str(i + 1)}, {"type": "text", "text": "."}]
        return {"messages": [{"role": "user", "content": f"q{i}" + "?" * (i % 5)},
                             {"role": "assistant", "content": parts}]}


def test_sft_targets_follow_the_chat_mask(byte_tok):
    data = ChatData(byte_tok, Chats(4), T=64, supervise="assistant", progress=False)
    x, y, _ = next(data.batches(B=4, packed=False))
    for row in range(4):
        ids, mask = byte_tok.render_conversation(Chats(4)[row])
        n = len(ids) - 1
        assert x[row, :n].tolist() == ids[:-1]
        expected = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        assert y[row, :n].tolist() == expected
        assert (y[row, n:] == IGNORE_INDEX).all()                        # padding is never a target
        text = byte_tok.decode([t for t in y[row].tolist() if t != IGNORE_INDEX])
        assert f"a{row} is " in text and f"{row}+1" in text              # the assistant's text and its tool call
        assert f"q{row}" not in text and "<|output_start|>" not in text  # not the user's turn nor the tool's answer
    assert x.shape[1] == max(len(byte_tok.render_conversation(c)[0]) for c in Chats(4)) - 1   # padded to the longest


def test_loss_and_gradient_come_only_from_supervised_tokens(byte_tok):
    data = ChatData(byte_tok, Chats(4), T=64, supervise="assistant", progress=False)
    x, y, _ = next(data.batches(B=4, packed=False))
    model = tiny_gpt(byte_tok.get_vocab_size(), seq_len=64, perturb=0.3)
    per_token = model(x, y, loss_reduction="none")
    assert (per_token[y == IGNORE_INDEX] == 0).all()
    supervised = y != IGNORE_INDEX
    # the training loss (fused chunked path) is the mean over supervised tokens only
    assert model(x, y).item() == pytest.approx(per_token[supervised].mean().item(), rel=1e-5)
    # gradient w.r.t. the final hidden states: exactly zero at unsupervised positions, not at supervised ones
    hidden = torch.randn(x.numel(), model.config.n_embd, requires_grad=True)
    chunked_cross_entropy(hidden, model.lm_head.weight, y.reshape(-1), chunk_rows=16).backward()
    grad_norms = hidden.grad.norm(dim=1)
    assert (grad_norms[~supervised.reshape(-1)] == 0).all()
    assert (grad_norms[supervised.reshape(-1)] > 0).all()


def test_long_conversation_is_truncated_and_counted(byte_tok):
    data = ChatData(byte_tok, Chats(6, long_one=True), T=48, supervise="assistant", progress=False)
    assert data.truncated == 1 and len(data) == 7 and max(data.lengths) == 49     # kept, cut to T + 1
    rows = [m for m in data.plan(0, packed=False)]
    assert sorted(i for r in rows for i in r) == list(range(7))                   # never silently dropped


def test_packing_uses_every_conversation_once_and_fills_rows(byte_tok):
    data = ChatData(byte_tok, Chats(40), T=128, supervise="all", progress=False)
    plan = data.plan(0, packed=True)
    assert sorted(i for r in plan for i in r) == list(range(40))
    assert all(sum(data.lengths[i] for i in r) <= 129 for r in plan)
    assert len(plan) <= 40 / 3                         # several chats per row, not one each
    x, y, _ = next(data.batches(B=2, packed=True))
    assert x.shape == (2, 128) and (x[:, 0] == byte_tok.get_bos_token_id()).all()  # rows start at a bos
    # supervise="all": every real next token is a target, only padding is not
    row = plan[0]
    n = sum(data.lengths[i] for i in row)
    assert (y[0, :n - 1] != IGNORE_INDEX).all() and (y[0, n - 1:] == IGNORE_INDEX).all()


def test_pack_rows_best_fit():
    assert pack_rows([0, 1, 2, 3], [6, 5, 4, 1], row_len=10, window=4) == [[0, 2], [1, 3]]
    assert pack_rows([0, 1], [10, 10], row_len=10) == [[0], [1]]


def test_same_seed_same_batches_and_exact_resume(byte_tok):
    def batches(seed, state=None):
        mixture = TaskMixture([Chats(30), Chats(9)], seed=seed)
        return ChatData(byte_tok, mixture, T=64, seed=seed, progress=False).batches(B=2, packed=True,
                                                                                    resume_state=state)
    first = [(x.tolist(), s) for x, _, s in itertools.islice(batches(1), 12)]     # more than one epoch
    assert first == [(x.tolist(), s) for x, _, s in itertools.islice(batches(1), 12)]
    assert first != [(x.tolist(), s) for x, _, s in itertools.islice(batches(2), 12)]
    assert first[-1][1]["epoch"] >= 1
    for k in (3, 7):                   # resume from the state after batch k: the very next batches
        resumed = [(x.tolist(), s) for x, _, s in itertools.islice(batches(1, first[k][1]), 12 - k - 1)]
        assert resumed == first[k + 1:]
    with pytest.raises(UserError, match="same --max-seq-len"):
        next(ChatData(byte_tok, Chats(4), T=32, progress=False).batches(B=1, packed=True, resume_state=first[0][1]))


def test_ranks_split_the_rows(byte_tok):
    data = ChatData(byte_tok, Chats(40), T=64, progress=False)
    one = next(data.batches(B=4, packed=True))[0]
    ranks = [next(data.batches(B=2, packed=True, rank=r, world_size=2))[0] for r in (0, 1)]
    assert torch.equal(torch.cat([ranks[0][:, None], ranks[1][:, None]], 1).reshape(4, -1), one)
