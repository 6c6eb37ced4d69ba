"""
Tests of nanochat/engine.py: KV cache against full forward passes, sampling, stops, tool forcing, text streaming,
conversation fitting; and int8 quantization (nanochat/quantize.py). A tiny random GPT and a byte-level tokenizer
(no training, no rustbpe).

    python -m pytest tests/test_engine.py -q
"""

import pytest
import torch

from nanochat.engine import Engine, KVCache, TextStreamer, fit_conversation, sample_next_token
from nanochat.gpt import GPTConfig, build_model
from nanochat.quantize import Int8Linear, quantize_int8


@pytest.fixture(scope="module")
def tokenizer(byte_tok):
    return byte_tok


def tiny_gpt(vocab_size, seq_len=96, n_kv_head=2, seed=0, **options):
    """A random GPT whose logits actually depend on the input (the real init zeroes the output projections).
    options: GPTConfig's mlp, window, window_pattern."""
    torch.manual_seed(seed)
    config = GPTConfig(sequence_len=seq_len, vocab_size=vocab_size, n_layer=3, n_head=4, n_kv_head=n_kv_head, n_embd=64,
                       **options)
    model = build_model(config, "cpu")
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5 / p.size(1) ** 0.5 if p is not model.transformer.wte.weight else 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gpt(tokenizer.get_vocab_size())


# -----------------------------------------------------------------------------
# KV cache == full forward

@pytest.mark.parametrize("n_kv_head", [4, 2, 1])   # MHA, GQA, MQA
def test_cache_decoding_matches_full_forward(tokenizer, n_kv_head):
    model = tiny_gpt(tokenizer.get_vocab_size(), n_kv_head=n_kv_head)
    torch.manual_seed(1)
    seq = torch.randint(0, 256, (1, 60))
    with torch.inference_mode():
        full = model(seq)                                   # (1, 60, V)
        cache = KVCache(batch_size=1, seq_len=60, num_layers=model.config.n_layer)
        # Prefill 20 tokens in two chunks (the second needs the prefix + causal mask), then decode one at a time.
        parts = [model(seq[:, :12], kv_cache=cache), model(seq[:, 12:20], kv_cache=cache)]
        parts += [model(seq[:, t:t + 1], kv_cache=cache) for t in range(20, 60)]
    assert cache.get_pos() == 60
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-4)


# The model options (gpt.py): SwiGLU, a window in every layer, a window in two of three layers (pattern SSL). The
# window (7) is shorter than both prefill chunks, so the second chunk reads the ring's prefix and the ring wraps.
OPTIONS = {"swiglu": dict(mlp="swiglu"), "window": dict(window=7), "window-SSL": dict(window=7, window_pattern="SSL")}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_cache_decoding_matches_full_forward_with_model_options(tokenizer, options):
    model = tiny_gpt(tokenizer.get_vocab_size(), **options)
    torch.manual_seed(1)
    seq = torch.randint(0, 256, (2, 60))
    with torch.inference_mode():
        full = model(seq)
        cache = KVCache(2, 60, model.config.n_layer, [model.config.layer_window(i) for i in range(3)])
        parts = [model(seq[:, :12], kv_cache=cache), model(seq[:, 12:20], kv_cache=cache)]
        parts += [model(seq[:, t:t + 1], kv_cache=cache) for t in range(20, 60)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-4)
    lengths = [k.size(2) for k in cache.k]
    assert lengths == [7 if model.config.layer_window(i) else 61 for i in range(3)], \
        f"a windowed layer's cache must stop at its window: {lengths}"
    # The engine (batch-1 prefill into 3 rows, then decoding) picks the tokens that full forward passes pick.
    prompt = tokenizer.encode("The cat sat on the mat", prepend="<|bos|>")
    engine = [col[0] for col, _ in Engine(model, tokenizer).generate(prompt, max_tokens=30, temperature=0.0)]
    assert engine == list(model.generate(prompt, max_tokens=len(engine), temperature=0.0))


def test_prefill_once_then_n_samples_match_full_forward(tokenizer, model):
    """Batch-1 prefill fills all N rows; each row then decodes its own tokens and must match its own full pass."""
    torch.manual_seed(2)
    n, prompt = 4, torch.randint(0, 256, (1, 15))
    continuations = torch.randint(0, 256, (n, 25))
    with torch.inference_mode():
        cache = KVCache(batch_size=n, seq_len=40, num_layers=model.config.n_layer)
        first = model(prompt, kv_cache=cache)[:, -1]
        steps = [model(continuations[:, t:t + 1], kv_cache=cache)[:, -1] for t in range(25)]
        for i in range(n):
            full = model(torch.cat([prompt[0], continuations[i]])[None])[0]
            torch.testing.assert_close(first[0], full[14], rtol=1e-4, atol=1e-4)
            for t in range(25):
                torch.testing.assert_close(steps[t][i], full[15 + t], rtol=1e-4, atol=1e-4)


def test_engine_greedy_equals_naive_generation(tokenizer, model):
    """Greedy decoding through the cache picks the same tokens as re-running the whole sequence each step."""
    prompt = tokenizer.encode("The cat sat", prepend="<|bos|>")
    engine_tokens = [col[0] for col, _ in Engine(model, tokenizer).generate(prompt, max_tokens=30, temperature=0.0)]
    naive = list(model.generate(prompt, max_tokens=len(engine_tokens), temperature=0.0))
    assert engine_tokens == naive


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, OPTIONS["window-SSL"]], ids=["default", "window-SSL"])
def test_compiled_decode_equals_eager(tokenizer, options):
    """The compiled batch-1 decode step (chat_web's default) picks the same greedy tokens as the eager model, over
    cache lengths that grow each step (one dynamic-shape compile, not one per length) and, with a window, past
    the point where its ring wraps."""
    model = tiny_gpt(tokenizer.get_vocab_size(), **options)
    prompt = tokenizer.encode("The cat sat on")
    eager = [col[0] for col, _ in Engine(model, tokenizer).generate(prompt, max_tokens=24, temperature=0.0)]
    compiled = [col[0] for col, _ in Engine(model, tokenizer, compile=True).generate(prompt, max_tokens=24,
                                                                                      temperature=0.0)]
    assert compiled == eager and len(eager) == 24
    # The compiled step computes single-query attention its own way (gpt.py): its logits must equal the full
    # forward pass's, at batch 1 and batch 3 (GQA: 4 query heads on 2 key/value heads).
    step = torch.compile(model, dynamic=True)
    torch.manual_seed(3)
    seq = torch.randint(0, 256, (3, 40))
    with torch.inference_mode():
        for rows in (1, 3):
            cache = KVCache(rows, 40, model.config.n_layer, [model.config.layer_window(i) for i in range(3)])
            parts = [model(seq[:rows, :10], kv_cache=cache)]
            parts += [step(seq[:rows, t:t + 1], kv_cache=cache) for t in range(10, 40)]
            torch.testing.assert_close(torch.cat(parts, dim=1), model(seq[:rows]), rtol=1e-4, atol=1e-4)


def test_cache_overflow_and_bad_batch_are_clear_errors(model):
    cache = KVCache(batch_size=2, seq_len=4, num_layers=model.config.n_layer)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="KV cache full"):
        model(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)
    cache = KVCache(batch_size=2, seq_len=8, num_layers=model.config.n_layer)
    with torch.inference_mode(), pytest.raises(ValueError, match="2 rows"):
        model(torch.zeros(3, 2, dtype=torch.long), kv_cache=cache)


# -----------------------------------------------------------------------------
# Sampling

def test_sampling_seeded_and_greedy(tokenizer, model):
    engine = Engine(model, tokenizer)
    prompt = tokenizer.encode("Once upon", prepend="<|bos|>")
    kw = dict(num_samples=3, max_tokens=20, temperature=1.0)
    a, _ = engine.generate_batch(prompt, seed=7, **kw)
    b, _ = engine.generate_batch(prompt, seed=7, **kw)
    c, _ = engine.generate_batch(prompt, seed=8, **kw)
    assert a == b
    assert a != c
    assert len({tuple(r) for r in a}) > 1, "samples of one request should differ from each other"
    g1, _ = engine.generate_batch(prompt, seed=1, num_samples=2, max_tokens=20, temperature=0.0)
    g2, _ = engine.generate_batch(prompt, seed=2, num_samples=2, max_tokens=20, temperature=0.0)
    assert g1 == g2 and g1[0] == g1[1]


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.tensor([[5.0, 4.0, 3.0, 0.0, -1.0]]).expand(2000, -1)
    gen = torch.Generator().manual_seed(0)
    picked = sample_next_token(logits, gen, temperature=1.0, top_k=2)
    assert set(picked.flatten().tolist()) == {0, 1}
    # probs ~ [0.66, 0.24, 0.09, ...]: top_p 0.8 keeps the first two tokens (0.66 < 0.8, 0.90 >= 0.8).
    picked = sample_next_token(logits, gen, temperature=1.0, top_p=0.8)
    assert set(picked.flatten().tolist()) == {0, 1}
    picked = sample_next_token(logits, gen, temperature=1.0, top_p=0.5)
    assert set(picked.flatten().tolist()) == {0}
    assert sample_next_token(logits[:1], None, temperature=0.0).item() == 0
    # A tiny positive temperature is greedy in effect, not a crash (found by fuzzing the server).
    assert set(sample_next_token(logits[:50], gen, temperature=1e-300).flatten().tolist()) == {0}
    assert set(sample_next_token(logits[:50], gen, temperature=1.0, top_p=1e-300).flatten().tolist()) == {0}
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(logits, gen, temperature=-1.0)


def test_sampling_frequencies_follow_temperature():
    logits = torch.tensor([[1.0, 0.0]]).expand(20000, -1)
    gen = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 2.0):
        share = (sample_next_token(logits, gen, temperature=temperature) == 0).float().mean().item()
        expected = torch.softmax(torch.tensor([1.0, 0.0]) / temperature, 0)[0].item()
        assert abs(share - expected) < 0.02


# -----------------------------------------------------------------------------
# Stops and the calculator tool, with a model that follows a script

class ScriptedModel(torch.nn.Module):
    """Predicts the next token from the last one through a fixed table; keeps the KV-cache contract."""

    def __init__(self, vocab_size, table, default):
        super().__init__()
        self.config = GPTConfig(sequence_len=64, vocab_size=vocab_size, n_layer=2, n_head=1, n_kv_head=1, n_embd=2)
        self.table, self.default = table, default
        self.seen = []          # every token fed to the model, for checking what was forced

    def get_device(self):
        return torch.device("cpu")

    def forward(self, idx, kv_cache=None):
        B, T = idx.shape
        self.seen.append(idx[:, -1].tolist())
        for layer in range(self.config.n_layer):
            kv_cache.insert_kv(layer, torch.zeros(B, 1, T, 2), torch.zeros(B, 1, T, 2))
        logits = torch.full((B, T, self.config.vocab_size), -10.0)
        for b in range(B):
            logits[b, -1, self.table.get(idx[b, -1].item(), self.default)] = 10.0
        return logits


def test_tool_call_result_is_forced_and_masked(tokenizer):
    sp = tokenizer.encode_special
    ch = lambda s: tokenizer.encode(s)[0]
    table = {sp("<|assistant_start|>"): sp("<|python_start|>"), sp("<|python_start|>"): ch("6"),
             ch("6"): ch("*"), ch("*"): ch("7"), ch("7"): sp("<|python_end|>"),
             sp("<|python_end|>"): ch("Z"),                # must be overridden by the forced output
             sp("<|output_end|>"): sp("<|assistant_end|>")}
    model = ScriptedModel(tokenizer.get_vocab_size(), table, default=ch("?"))
    engine = Engine(model, tokenizer)
    prompt = [sp("<|bos|>"), sp("<|user_start|>"), ch("q"), sp("<|user_end|>"), sp("<|assistant_start|>")]
    results, masks = engine.generate_batch(prompt, num_samples=2, max_tokens=30, temperature=1.0)
    expected = [sp("<|python_start|>"), ch("6"), ch("*"), ch("7"), sp("<|python_end|>"),
                sp("<|output_start|>"), ch("4"), ch("2"), sp("<|output_end|>")]
    for result, mask in zip(results, masks):
        assert result == prompt + expected                 # stopped at <|assistant_end|>, which is excluded
        assert mask == [0] * 5 + [1] * 5 + [0] * 4


def test_refused_tool_call_forces_nothing(tokenizer):
    sp = tokenizer.encode_special
    ch = lambda s: tokenizer.encode(s)[0]
    table = {sp("<|assistant_start|>"): sp("<|python_start|>"), sp("<|python_start|>"): ch("x"),
             ch("x"): sp("<|python_end|>"), sp("<|python_end|>"): sp("<|assistant_end|>")}
    model = ScriptedModel(tokenizer.get_vocab_size(), table, default=ch("?"))
    results, masks = Engine(model, tokenizer).generate_batch([sp("<|assistant_start|>")], max_tokens=10)
    assert results[0][1:] == [sp("<|python_start|>"), ch("x"), sp("<|python_end|>")]
    assert masks[0] == [0, 1, 1, 1]


@pytest.mark.parametrize("stop", ["<|assistant_end|>", "<|bos|>", "<|user_end|>", "<|user_start|>",
                                  "<|assistant_start|>"])
def test_stops_at_stop_tokens_and_budget(tokenizer, stop):
    sp = tokenizer.encode_special
    ch = lambda s: tokenizer.encode(s)[0]
    model = ScriptedModel(tokenizer.get_vocab_size(), {ch("a"): ch("b"), ch("b"): sp(stop)}, default=ch("a"))
    engine = Engine(model, tokenizer)
    steps = list(engine.generate([ch("a")], max_tokens=50))
    assert [col[0] for col, _ in steps] == [ch("b"), sp(stop)]
    reply = engine.stream([ch("a")], max_tokens=50)
    assert "".join(reply) == "b" and reply.finish_reason == "stop" and reply.completion_tokens == 2
    looping = ScriptedModel(tokenizer.get_vocab_size(), {}, default=ch("a"))
    reply = Engine(looping, tokenizer).stream([ch("a")], max_tokens=7)
    assert "".join(reply) == "a" * 7 and reply.finish_reason == "length"


def test_generation_stops_at_context_end(tokenizer, model):
    engine = Engine(model, tokenizer)
    context = model.config.sequence_len
    prompt = tokenizer.encode("x" * (context - 5))
    steps = list(engine.generate(prompt, max_tokens=100, temperature=1.0))
    assert len(steps) <= 5
    with pytest.raises(ValueError, match="context"):
        list(engine.generate(tokenizer.encode("x" * context), max_tokens=3))


# -----------------------------------------------------------------------------
# Text streaming and fitting conversations into the context

def test_streamer_never_splits_a_character(tokenizer):
    text = "naïve café 😀 日本語 ok"
    streamer = TextStreamer(tokenizer)
    pieces = [streamer.push(t) for t in tokenizer.encode(text)] + [streamer.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert sum(1 for p in pieces if p == "") > 0          # some tokens ended mid-character and waited
    broken = TextStreamer(tokenizer)
    assert broken.push(0xF0) == "" and broken.flush() == "\ufffd"   # a cut-off character is shown as U+FFFD


def test_fit_conversation_drops_oldest_turns(tokenizer):
    turns = []
    for i in range(10):
        turns += [{"role": "user", "content": f"question {i} " + "q" * 40},
                  {"role": "assistant", "content": f"answer {i} " + "a" * 40}]
    conversation = {"messages": [{"role": "system", "content": "be brief"}] + turns + [
        {"role": "user", "content": "last question"}]}
    ids, dropped = fit_conversation(tokenizer, conversation, max_prompt_tokens=300)
    text = tokenizer.decode(ids)
    assert len(ids) <= 300 and dropped > 0 and dropped % 2 == 0
    assert "last question" in text and "be brief" in text and "question 0 " not in text
    assert text.endswith("<|assistant_start|>")
    assert fit_conversation(tokenizer, conversation, 100_000) == (tokenizer.render_for_completion(conversation), 0)


def test_fit_conversation_renders_a_long_chat_few_times(tokenizer):
    """A server request may hold 255 messages; the chat is rendered O(log n) times, not once per dropped turn, and
    the fewest turns that make it fit are dropped."""
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "w" * 30} for i in range(255)]
    renders = []

    class Counting:
        def render_for_completion(self, conversation):
            renders.append(len(conversation["messages"]))
            return tokenizer.render_for_completion(conversation)

    ids, dropped = fit_conversation(Counting(), {"messages": turns}, max_prompt_tokens=400)
    assert len(renders) <= 10, f"{len(renders)} renders"
    assert len(ids) <= 400 and tokenizer.decode(ids).endswith(f"turn 254 {'w' * 30}<|user_end|><|assistant_start|>")
    one_more = tokenizer.render_for_completion({"messages": turns[dropped - 2:]})
    assert len(one_more) > 400, "one pair fewer dropped would also have fit"
    assert ids == tokenizer.render_for_completion({"messages": turns[dropped:]})


def test_engine_fit_prompt_leaves_room_for_the_reply(tokenizer, model):
    engine = Engine(model, tokenizer)                     # context 96
    turns = [{"role": "user", "content": "q" * 70}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "hi"}]
    ids, max_tokens, dropped = engine.fit_prompt(turns, max_tokens=30)
    assert dropped == 2 and len(ids) + max_tokens <= 96 and max_tokens == 30
    ids, max_tokens, dropped = engine.fit_prompt([{"role": "user", "content": "q" * 500}], max_tokens=1000)
    assert len(ids) == 48 and max_tokens == 48      # at least half the context stays for the prompt


def test_fit_conversation_cuts_one_huge_message_from_the_front(tokenizer):
    conversation = {"messages": [{"role": "user", "content": "z" * 500 + " the real question?"}]}
    ids, _ = fit_conversation(tokenizer, conversation, max_prompt_tokens=64)
    text = tokenizer.decode(ids)
    assert len(ids) == 64
    assert text.startswith("<|bos|><|user_start|>") and text.endswith("the real question?<|user_end|><|assistant_start|>")


# -----------------------------------------------------------------------------
# int8 weights

@pytest.mark.parametrize("act_dtype", [torch.float32, torch.bfloat16])
def test_int8_model_stays_close_to_fp32(tokenizer, act_dtype):
    model = tiny_gpt(tokenizer.get_vocab_size())
    quantized = quantize_int8(tiny_gpt(tokenizer.get_vocab_size()), act_dtype)
    assert isinstance(quantized.lm_head, Int8Linear) and quantized.transformer.h[0].attn.c_q.weight_int8.dtype == torch.int8
    seq = torch.randint(0, 256, (2, 40))
    with torch.inference_mode():
        ref, got = model(seq), quantized(seq)
    assert got.dtype == torch.float32
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel < (0.02 if act_dtype == torch.float32 else 0.05), rel
    # and its KV-cache decoding still matches its own full forward
    with torch.inference_mode():
        cache = KVCache(1, 40, quantized.config.n_layer)
        steps = [quantized(seq[:1, :8], kv_cache=cache)[:, -1]] + [quantized(seq[:1, t:t + 1], kv_cache=cache)[:, -1]
                                                                   for t in range(8, 40)]
        full = quantized(seq[:1])[0, 7:]
    tol = 1e-4 if act_dtype == torch.float32 else 0.1
    torch.testing.assert_close(torch.cat(steps), full, rtol=tol, atol=tol)
