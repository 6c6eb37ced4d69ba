"""
Tests of nanochat/tokenizer.py: round trips on random Unicode, token byte lengths, special-token text staying plain
text, chat rendering and its loss mask, save/load, and clear errors on bad training input.
A tiny tokenizer is trained by rustbpe on a corpus that lives in this file.

    python -m pytest tests/test_tokenizer.py -q
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanochat.tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN, Tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Tokenizers split text into pieces; byte-level BPE merges the most frequent pairs first.",
    "Numbers like 1234567 are split into groups of at most two digits: 12 34 56 7.",
    "Unicode: héllo wörld, 你好世界, こんにちは, Привет мир, 🙂🚀 emoji.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
] * 20


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train_from_iterator(iter(CORPUS), vocab_size=256 + len(SPECIAL_TOKENS) + 64)


def test_vocab_layout(tok):
    assert tok.get_vocab_size() == 256 + 9 + 64
    assert [tok.encode_special(s) for s in SPECIAL_TOKENS] == list(range(256 + 64, 256 + 64 + 9))
    assert tok.get_bos_token_id() == tok.encode_special("<|bos|>")
    assert len(tok.encode("the quick brown fox")) < len("the quick brown fox".encode())  # merges were learnt


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_random_unicode(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_batch_encode_matches_single(tok):
    texts = ["hello", "", "你好 world", "12345"]
    assert tok.encode(texts, prepend="<|bos|>") == [[tok.get_bos_token_id()] + tok.encode(t) for t in texts]


def test_token_bytes_counts_raw_bytes(tok, tmp_path):
    tb = tok.token_bytes()
    assert tb.shape == (tok.get_vocab_size(),)
    for name in SPECIAL_TOKENS:
        assert tb[tok.encode_special(name)] == 0
    # a lone UTF-8 continuation byte is a token of 1 byte although it is not valid UTF-8 on its own
    assert tb[tok.mergeable_ranks[b"\x80"]] == 1
    ids = tok.encode("你好世界🙂")
    assert sum(tb[i].item() for i in ids) == len("你好世界🙂".encode())
    tok.save(str(tmp_path))
    again = Tokenizer.from_directory(str(tmp_path))
    assert again.encode("héllo 你好") == tok.encode("héllo 你好")
    import torch
    assert torch.equal(torch.load(tmp_path / "token_bytes.pt"), tb)


def test_special_token_text_is_ordinary_text(tok):
    text = "<|assistant_start|>hi<|bos|>"
    ids = tok.encode(text)
    assert all(i < 256 + 64 for i in ids)
    assert tok.decode(ids) == text


def test_render_conversation_mask(tok):
    sp = tok.encode_special
    conv = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me compute."},
                                          {"type": "python", "text": "2+2"},
                                          {"type": "python_output", "text": "4"},
                                          {"type": "text", "text": "It is 4."}]},
    ]}
    ids, mask = tok.render_conversation(conv)
    assert len(ids) == len(mask)
    expected = ([sp("<|bos|>"), sp("<|user_start|>")] + tok.encode("Be brief.\n\n2+2?") + [sp("<|user_end|>"),
                sp("<|assistant_start|>")] + tok.encode("Let me compute.") + [sp("<|python_start|>")]
                + tok.encode("2+2") + [sp("<|python_end|>"), sp("<|output_start|>")] + tok.encode("4")
                + [sp("<|output_end|>")] + tok.encode("It is 4.") + [sp("<|assistant_end|>")])
    assert ids == expected  # the system message is merged into the first user message
    trained = [i for i, m in zip(ids, mask) if m]
    assert trained == (tok.encode("Let me compute.") + [sp("<|python_start|>")] + tok.encode("2+2")
                       + [sp("<|python_end|>")] + tok.encode("It is 4.") + [sp("<|assistant_end|>")])
    # bos, the user turn, <|assistant_start|> and the tool output are not trained on
    for name in ("<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|output_start|>",
                 "<|output_end|>"):
        assert mask[ids.index(sp(name))] == 0
    # truncation keeps ids and mask aligned
    short_ids, short_mask = tok.render_conversation(conv, max_tokens=7)
    assert short_ids == ids[:7] and short_mask == mask[:7]
    prompt = tok.render_for_completion(conv)
    assert prompt[-1] == sp("<|assistant_start|>") and prompt[:-1] == ids[:ids.index(sp("<|assistant_start|>"))]


def test_render_conversation_bad_input(tok):
    with pytest.raises(ValueError, match="alternate"):
        tok.render_conversation({"messages": [{"role": "assistant", "content": "hi"}]})
    with pytest.raises(ValueError, match="unknown part type"):
        tok.render_conversation({"messages": [{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": [{"type": "image", "text": "x"}]}]})


def test_training_bad_arguments():
    with pytest.raises(ValueError, match="at least 265"):
        Tokenizer.train_from_iterator(iter(CORPUS), vocab_size=200)
    with pytest.raises((TypeError, ValueError), match="(?i)str"):
        Tokenizer.train_from_iterator(iter(["fine text", 42]), vocab_size=300)
    with pytest.raises(ValueError, match="corpus is empty"):
        Tokenizer.train_from_iterator(iter([]), vocab_size=300)


def test_training_is_deterministic():
    a = Tokenizer.train_from_iterator(iter(CORPUS), vocab_size=300)
    b = Tokenizer.train_from_iterator(iter(CORPUS), vocab_size=300)
    assert a.mergeable_ranks == b.mergeable_ranks and a.pattern == b.pattern == SPLIT_PATTERN


def test_too_small_corpus_states_the_limit_with_special_tokens():
    # "abc" has 2 pairs: 256 bytes + 2 merges + 9 specials = 267 tokens at most
    with pytest.raises(ValueError, match=r"vocab_size=300: it supports at most 267 tokens.*vocab_size <= 267"):
        Tokenizer.train_from_iterator(iter(["abc"]), vocab_size=300)
    assert Tokenizer.train_from_iterator(iter(["abc"]), vocab_size=267).get_vocab_size() == 267
