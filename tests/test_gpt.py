"""
Tests of the model: gradients in float64 against finite differences, the fused loss against the plain one,
causality, GQA/MQA shapes, the blocked CPU attention against SDPA (float64 gradients, bf16 accuracy, compiled),
KV-cache decoding == full forward, init, FLOP accounting, the calculator.

    pytest tests/test_gpt.py -q
"""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import random_gpt
from nanochat import gpt
from nanochat.gpt import (GPT, attention_mask, blocked_attention, build_model, chunked_cross_entropy,
                          config_from_depth, main)

V = 37


def tiny_model(n_head=4, n_kv_head=4, n_embd=32, n_layer=2, seq=16, dtype=torch.float32, seed=0) -> GPT:
    """A tiny model with every weight random (the real init zeroes the projections, which hides bugs)."""
    return random_gpt(seed=seed, dtype=dtype, sequence_len=seq, vocab_size=V, n_layer=n_layer, n_head=n_head,
                      n_kv_head=n_kv_head, n_embd=n_embd)


def test_gradients_match_finite_differences_float64():
    model = tiny_model(n_head=2, n_kv_head=1, n_embd=16, n_layer=1, seq=6, dtype=torch.float64)
    idx = torch.randint(0, V, (2, 6))
    targets = torch.randint(0, V, (2, 6))
    targets[0, :2] = -1                      # ignored targets must not contribute
    names = ["transformer.wte.weight", "transformer.h.0.attn.c_q.weight", "transformer.h.0.attn.c_k.weight",
             "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight", "lm_head.weight"]
    params = dict(model.named_parameters())

    def loss_fn(*tensors):
        return functional_call(model, {**params, **dict(zip(names, tensors))}, (idx, targets))

    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(loss_fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("chunk_rows", [1, 5, 64])
def test_chunked_cross_entropy_matches_plain(chunk_rows):
    torch.manual_seed(0)
    x = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, V, (23,))
    t[3] = t[10] = -1
    loss = chunked_cross_entropy(x, w, t, chunk_rows)
    gx, gw = torch.autograd.grad(3.0 * loss, (x, w))
    ref = F.cross_entropy(15 * torch.tanh(x @ w.T / 15), t, ignore_index=-1)
    rx, rw = torch.autograd.grad(3.0 * ref, (x, w))
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)


def test_training_loss_equals_eval_loss_and_per_token_losses():
    model = tiny_model()
    idx, targets = torch.randint(0, V, (3, 16)), torch.randint(0, V, (3, 16))
    fused = model(idx, targets)                      # grad enabled: the chunked path
    with torch.no_grad():
        plain = model(idx, targets)
        per_token = model(idx, targets, loss_reduction="none")
        logits = model(idx)                          # the reference: whole logits, then F.cross_entropy
        model.ce_chunk_rows = 5                      # evaluation's chunks, several and a ragged last one
        chunked = model(idx, targets, loss_reduction="none")
    reference = F.cross_entropy(logits.view(-1, V), targets.view(-1), reduction="none").view(3, 16)
    assert per_token.shape == (3, 16)
    torch.testing.assert_close(per_token, reference)
    torch.testing.assert_close(chunked, reference)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(plain, reference.mean())


def test_logits_are_softcapped_fp32():
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.mul_(1000)
        logits = model(torch.randint(0, V, (1, 8)))
    assert logits.dtype == torch.float32 and logits.shape == (1, 8, V)
    assert logits.abs().max() <= 15.0


def test_causality():
    model = tiny_model()
    idx = torch.randint(0, V, (1, 16))
    changed = idx.clone()
    changed[0, 9] = (idx[0, 9] + 1) % V
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=0)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_gqa_and_mqa_shapes(n_kv_head):
    model = tiny_model(n_head=4, n_kv_head=n_kv_head, n_embd=32)
    attn = model.transformer.h[0].attn
    assert attn.c_q.weight.shape == (32, 32)
    assert attn.c_k.weight.shape == attn.c_v.weight.shape == (n_kv_head * 8, 32)
    assert model(torch.randint(0, V, (2, 5))).shape == (2, 5, V)
    with pytest.raises(ValueError, match="n_kv_head"):
        config_from_depth(2, V, 16, head_dim=32, n_kv_head=3)


def test_a_window_hides_the_tokens_before_it():
    """window 4, one layer: position 9 sees positions 6..9; changing 5 leaves it alone, changing 6 does not."""
    model = random_gpt(seed=0, sequence_len=16, vocab_size=V, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, window=4)
    idx = torch.randint(0, V, (1, 16))
    with torch.no_grad():
        base = model(idx)[0, 9]
        for position, visible in [(5, False), (6, True)]:
            changed = idx.clone()
            changed[0, position] = (idx[0, position] + 1) % V
            assert torch.equal(model(changed)[0, 9], base) != visible, position


@pytest.mark.parametrize("width", [128, 256, 384, 512])
def test_swiglu_has_relu2s_parameter_count(width):
    relu2 = config_from_depth(width // 64, V, 16, head_dim=64)
    swiglu = config_from_depth(width // 64, V, 16, head_dim=64, mlp="swiglu")
    n = [sum(p.numel() for p in build_model(c, "meta").transformer.h[0].mlp.parameters()) for c in (relu2, swiglu)]
    assert abs(n[1] / n[0] - 1) < 0.01, n
    with pytest.raises(ValueError, match="mlp='gelu'"):
        config_from_depth(2, V, 16, mlp="gelu")


def sdpa_reference(q, k, v, window):
    T = q.size(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(T, T, window, q.device))


@pytest.mark.parametrize("T, block, window", [(16, 4, 0), (13, 4, 0), (16, 16, 0), (19, 5, 7), (16, 4, 3), (1, 4, 0)])
def test_blocked_attention_equals_sdpa_with_exact_gradients(T, block, window):
    """Several query blocks (the last one short), each skipping the keys it may not see; with a window, also the
    keys before it. float64: values equal SDPA's, gradients pass gradcheck."""
    q, k, v = (torch.randn(6, T, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    torch.testing.assert_close(blocked_attention(q, k, v, window, block), sdpa_reference(q, k, v, window))
    assert torch.autograd.gradcheck(lambda *qkv: blocked_attention(*qkv, window, block), (q, k, v))


def test_blocked_attention_in_bf16_is_as_accurate_as_sdpa():
    """In bf16 its scores and probabilities are rounded like SDPA's math path; its error against a float64
    reference (output and all three gradients) stays within twice that of SDPA's own bf16 kernel."""
    torch.manual_seed(0)
    q, k = (F.rms_norm(torch.randn(8, 300, 32), (32,)) for _ in range(2))     # QK-normed, as in the model
    v, grad_out = torch.randn(8, 300, 32), torch.randn(8, 300, 32)

    def run(fn, dtype):
        qkv = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        out = fn(*qkv)
        out.backward(grad_out.to(dtype))
        return [out] + [t.grad for t in qkv]

    exact = run(lambda *qkv: sdpa_reference(*qkv, 0), torch.float64)
    ours = run(lambda *qkv: blocked_attention(*qkv, 0, 128), torch.bfloat16)
    sdpa = run(lambda *qkv: F.scaled_dot_product_attention(*qkv, is_causal=True), torch.bfloat16)
    for name, a, b, ref in zip(["out", "dq", "dk", "dv"], ours, sdpa, exact):
        error_ours, error_sdpa = ((x.double() - ref).norm() / ref.norm() for x in (a, b))
        assert error_ours < 2 * error_sdpa, (name, error_ours.item(), error_sdpa.item())


@pytest.mark.slow
def test_compiled_training_step_with_blocked_attention_equals_eager(monkeypatch):
    """torch.compile sees the blocked attention as one opaque op with its own backward: same loss and gradients."""
    monkeypatch.setattr(gpt, "ATTN_BLOCK", 4)      # 4 query blocks at length 16
    model = tiny_model(n_kv_head=2)
    idx, targets = torch.randint(0, V, (2, 16)), torch.randint(0, V, (2, 16))

    def loss_and_grads(m):
        model.zero_grad()
        loss = m(idx, targets)
        loss.backward()
        return [loss] + [p.grad.clone() for p in model.parameters()]

    eager = loss_and_grads(model)
    compiled = loss_and_grads(torch.compile(model, dynamic=False))
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class TinyKVCache:
    """The KV-cache contract of nanochat/engine.py, in its simplest form (a growing list of tensors)."""

    def __init__(self, n_layer):
        self.k, self.v, self.pos, self.n_layer = [None] * n_layer, [None] * n_layer, 0, n_layer

    def get_pos(self):
        return self.pos

    def insert_kv(self, layer, k, v):
        self.k[layer] = k if self.k[layer] is None else torch.cat([self.k[layer], k], dim=2)
        self.v[layer] = v if self.v[layer] is None else torch.cat([self.v[layer], v], dim=2)
        if layer == self.n_layer - 1:
            self.pos += k.size(2)
        return self.k[layer], self.v[layer]


@pytest.mark.parametrize("n_kv_head", [1, 4])
def test_kv_cache_decoding_equals_full_forward(n_kv_head, monkeypatch):
    monkeypatch.setattr(gpt, "ATTN_BLOCK", 4)      # the full forward's blocked attention in 3 query blocks
    model = tiny_model(n_kv_head=n_kv_head)
    idx = torch.randint(0, V, (2, 12))
    with torch.no_grad():
        full = model(idx)
        cache = TinyKVCache(model.config.n_layer)
        pieces = [model(idx[:, :5], kv_cache=cache)]               # prefill
        pieces += [model(idx[:, t:t + 1], kv_cache=cache) for t in range(5, 8)]   # decode one at a time
        pieces.append(model(idx[:, 8:12], kv_cache=cache))          # a chunk after a prefix: prefix+causal mask
    assert cache.get_pos() == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)


def test_init_on_meta_device():
    model = build_model(config_from_depth(2, 300, 32, head_dim=64), "cpu")
    assert model.get_device().type == "cpu"
    assert model.lm_head.weight.abs().sum() == 0
    for block in model.transformer.h:
        assert block.attn.c_proj.weight.abs().sum() == 0 and block.mlp.c_proj.weight.abs().sum() == 0
    std = model.transformer.h[0].attn.c_q.weight.std().item()
    assert abs(std - 128 ** -0.5) < 0.01
    assert abs(model.transformer.wte.weight.std().item() - 1.0) < 0.01
    assert torch.isfinite(model.cos).all() and model.cos[0, 0].eq(1).all()


def test_config_from_depth_and_flops():
    c = config_from_depth(4, 8192, 512)
    assert (c.n_embd, c.n_head, c.n_kv_head) == (256, 2, 2)
    c64 = config_from_depth(6, 8192, 512, head_dim=64)
    assert (c64.n_embd, c64.n_head) == (384, 6)
    model = GPT(c)
    n = model.num_params()
    assert n["wte"] == n["lm_head"] == 8192 * 256 and n["matrices"] == 12 * 4 * 256 ** 2
    assert n["total"] == sum(p.numel() for p in model.parameters())
    assert model.estimate_flops() == 6 * (n["matrices"] + n["lm_head"]) + 12 * 4 * 256 * 512


def test_calculator(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["gpt", "--depth", "1", "--vocab-size", "512", "--seq-len", "32", "--batch", "2", "--head-dim", "64"])
    main()
    out = capsys.readouterr().out
    assert "parameters: 114,688 total" in out       # 2*512*64 + 12*64^2
    assert "GFLOP per forward+backward" in out and "activations" in out


def test_measuring_the_matmul_peak_leaves_the_global_rng_alone():
    # base_train measures the peak before it initialises the model: the measurement must not change the init.
    from nanochat.gpt import measure_matmul_flops
    before = torch.get_rng_state()
    assert measure_matmul_flops("cpu", torch.float32, sizes=(64,), seconds=0.05) > 0
    assert torch.equal(before, torch.get_rng_state())
