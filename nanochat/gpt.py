"""
The GPT model: config, init, forward (training loss, logits, KV-cache decoding), FLOP and memory accounting.

Architecture (as in public nanochat): pre-norm decoder, RMSNorm without weights, rotary positions, QK-norm, grouped-query
attention through n_kv_head, relu^2 MLP, no biases, untied embedding and lm_head, logits soft-capped at 15.
Options (off by default; README.md has their measured bpb and speed): a SwiGLU MLP with as many parameters
(mlp="swiglu"), and sliding-window attention (window=N: a query sees itself and the N-1 positions before it) in all
layers or in a tiled pattern such as "SSSL" (S = windowed, L = full).
The training loss fuses lm_head + soft-cap + cross-entropy in row chunks (ChunkedLinearCrossEntropy): the
(tokens x vocab) logits never exist in full, which on a CPU saves far more memory traffic than it costs.
Full-length causal attention on a CPU is blocked_attention, a custom op with its own backward that computes only
the query x key blocks a causal (or windowed) mask leaves; CUDA and the KV-cache steps use SDPA.

The calculator (parameters, memory, activations, FLOPs per step for a config):

    python -m nanochat.gpt --depth 4 --vocab-size 8192 --seq-len 512 --batch 8
"""

import argparse
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SOFTCAP = 15.0         # logits = SOFTCAP * tanh(logits / SOFTCAP)
ROTARY_BASE = 10000
IGNORE_INDEX = -1      # targets equal to this are not trained on (padding, masked chat turns)
MLP_KINDS = ("relu2", "swiglu")


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6         # query heads
    n_kv_head: int = 6      # key/value heads (GQA/MQA when < n_head)
    n_embd: int = 768
    mlp: str = "relu2"          # relu2 (hidden 4 x n_embd) or swiglu (hidden ~8/3 x n_embd: the same parameters)
    window: int = 0             # sliding-window attention span in tokens (0 = full attention everywhere)
    window_pattern: str = "S"   # tiled over the layers: S = windowed layer, L = full attention

    def __post_init__(self):
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp={self.mlp!r}: choose one of {', '.join(MLP_KINDS)}")
        if self.window < 0:
            raise ValueError(f"window={self.window} must be >= 0 (0 = full attention)")
        if not self.window_pattern or set(self.window_pattern) - set("SL"):
            raise ValueError(f"window_pattern={self.window_pattern!r} must be letters S (windowed) and L (full)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_kv_head < 1 or self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head dim {self.n_embd // self.n_head} must be even for rotary embeddings")

    def layer_window(self, layer_idx: int) -> int:
        """Attention span of layer layer_idx in tokens, 0 = full."""
        windowed = self.window_pattern[layer_idx % len(self.window_pattern)] == "S"
        return self.window if windowed and self.window < self.sequence_len else 0

    def mlp_hidden(self) -> int:
        """relu^2: 4 x width (2 matrices); SwiGLU: 3 matrices, so 8/3 x width, rounded to a multiple of 8 (SIMD-
        friendly sizes; the MLP's parameters within 1% of relu^2's from width 128 up)."""
        return 4 * self.n_embd if self.mlp == "relu2" else 8 * round(8 * self.n_embd / 3 / 8)


def config_from_depth(depth: int, vocab_size: int, sequence_len: int, head_dim: int = 128,
                      n_kv_head: int | None = None, **options) -> GPTConfig:
    """The one dial: width = 64 * depth, rounded up to a whole number of heads of head_dim. options: GPTConfig's
    mlp, window, window_pattern."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be an even number >= 2, got {head_dim}")
    n_head = max(1, math.ceil(depth * 64 / head_dim))
    n_kv_head = n_head if n_kv_head in (None, -1) else n_kv_head
    if n_kv_head < 1 or n_head % n_kv_head:
        raise ValueError(f"n_kv_head={n_kv_head} must divide the number of heads ({n_head} at depth {depth}, "
                         f"head dim {head_dim})")
    return GPTConfig(sequence_len=sequence_len, vocab_size=vocab_size, n_layer=depth, n_head=n_head,
                     n_kv_head=n_kv_head, n_embd=n_head * head_dim, **options)


def _upcast(t):
    """Logits are computed in fp32 (fp64 stays fp64 for gradient checks)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x, cos, sin):
    """Rotate (B, T, H, D) by position: the two halves of D are the (real, imaginary) parts."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def attention_mask(Tq: int, Tk: int, window: int, device) -> torch.Tensor:
    """(Tq, Tk) bool, True where query i may see key j, for the last Tq of Tk consecutive positions: causal, and
    with window > 0 only the window - 1 keys before the query and itself."""
    q = torch.arange(Tq, device=device)[:, None] + (Tk - Tq)       # positions, counted from the first key
    k = torch.arange(Tk, device=device)[None, :]
    allowed = k <= q
    return allowed & (k > q - window) if window else allowed


# -----------------------------------------------------------------------------
# Causal attention on a CPU: query blocks, each against only the keys it may see

ATTN_BLOCK = 128                # query rows per block: keys after a block's last query are never computed
ATTN_CHUNK_SCORES = 1 << 20     # score elements of one chunk of heads (2 MB in bf16: stays in the caches)


def _attention_blocks(T: int, window: int, block: int, dtype, device):
    """(first query, end query, first key, additive mask of the block's queries x keys) for each query block."""
    for s0 in range(0, T, block):
        s1 = min(s0 + block, T)
        k0 = max(0, s0 - window + 1) if window else 0          # keys before the block's window are skipped too
        allowed = attention_mask(s1 - s0, s1 - k0, window, device)
        yield s0, s1, k0, torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, -math.inf)


def _head_chunks(N: int, T: int, block: int):
    """Slices of the N heads, each small enough that a block's scores (heads x block x T) stay in the caches."""
    step = max(1, ATTN_CHUNK_SCORES // (min(block, T) * T))
    return [slice(i, i + step) for i in range(0, N, step)]


def _attention_tiles(q: torch.Tensor, window: int, block: int):
    """Every (heads, first query, end query, first key, mask) tile that the forward and the backward compute."""
    blocks = list(_attention_blocks(q.size(1), window, block, q.dtype, q.device))
    for h in _head_chunks(q.size(0), q.size(1), block):
        for s0, s1, k0, mask in blocks:
            yield h, s0, s1, k0, mask


def _tile_probs(q_tile, k_tile, mask, scale):
    return torch.softmax(torch.baddbmm(mask, q_tile, k_tile.mT, alpha=scale), dim=-1)


@torch.library.custom_op("nanochat::blocked_attention", mutates_args=())
def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, block: int) -> torch.Tensor:
    """Causal (optionally windowed) attention of q, k, v (heads, T, head_dim), scale 1/sqrt(head_dim).

    SDPA's CPU kernel spends most of its time outside its matmuls (README.md, "Blocked causal attention", has the
    measurements); this does the work as a few large batched matmuls and softmax kernels: the heads go in chunks
    whose scores stay in the caches, and each block of queries is multiplied only with the keys it may see (at
    T=512 with blocks of 128: 10 of the 16 query x key blocks). The backward recomputes the scores instead of
    keeping them (flash attention's trade: nothing of size T x T is kept). Scores and probabilities are in the
    inputs' dtype; the softmax runs in fp32 inside torch's kernel (as SDPA's math path does under autocast)."""
    scale = q.size(-1) ** -0.5
    out = torch.empty_like(q)
    for h, s0, s1, k0, mask in _attention_tiles(q, window, block):
        probs = _tile_probs(q[h, s0:s1], k[h, k0:s1], mask, scale)
        torch.bmm(probs, v[h, k0:s1], out=out[h, s0:s1])
    return out


@torch.library.custom_op("nanochat::blocked_attention_backward", mutates_args=())
def blocked_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad_out: torch.Tensor,
                               window: int, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of blocked_attention: per block, recompute the probabilities P, then dV += P^T dO,
    dS = softmax_backward(dO V^T, P), dQ = dS K, dK += dS^T Q (dK and dV accumulate over blocks in fp32)."""
    scale = q.size(-1) ** -0.5
    acc = torch.promote_types(q.dtype, torch.float32)
    grad_q = torch.empty_like(q)
    grad_k = torch.zeros(k.shape, dtype=acc, device=k.device)
    grad_v = torch.zeros(v.shape, dtype=acc, device=v.device)
    for h, s0, s1, k0, mask in _attention_tiles(q, window, block):
        qb, kb, vb, dob = q[h, s0:s1], k[h, k0:s1], v[h, k0:s1], grad_out[h, s0:s1]
        probs = _tile_probs(qb, kb, mask, scale)
        grad_v[h, k0:s1] += probs.mT @ dob
        grad_scores = torch._softmax_backward_data(dob @ vb.mT, probs, -1, probs.dtype)
        torch.bmm(grad_scores, kb, out=grad_q[h, s0:s1])
        grad_k[h, k0:s1] += grad_scores.mT @ qb
    return grad_q.mul_(scale), grad_k.mul_(scale).to(k.dtype), grad_v.to(v.dtype)


@blocked_attention.register_fake
def _(q, k, v, window, block):
    return torch.empty_like(q)


@blocked_attention_backward.register_fake
def _(q, k, v, grad_out, window, block):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _blocked_attention_setup(ctx, inputs, output):
    q, k, v, ctx.window, ctx.block = inputs
    ctx.save_for_backward(q, k, v)


def _blocked_attention_grad(ctx, grad_out):
    q, k, v = ctx.saved_tensors
    grads = blocked_attention_backward(q, k, v, grad_out.contiguous(), ctx.window, ctx.block)
    return *grads, None, None


blocked_attention.register_autograd(_blocked_attention_grad, setup_context=_blocked_attention_setup)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.window = config.layer_window(layer_idx)
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, kv_cache=None):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)      # (B, H, T, D)
        if kv_cache is not None:
            k, v = kv_cache.insert_kv(self.layer_idx, k, v)                     # all keys so far: (B, Hkv, Tk, D)
        if self.n_kv_head != self.n_head:
            repeat = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        Tq, Tk = q.size(2), k.size(2)
        # One new token that sees the whole (windowed) cache. An exported graph serves every cache length, so there
        # a windowed layer always takes the mask below (is_exporting first: Tk <= window would fix the length).
        whole_cache = Tq == 1 and (not self.window or (not torch.compiler.is_exporting() and Tk <= self.window))
        if whole_cache and torch.compiler.is_compiling():
            # Compiled decode step: written as two reductions, which inductor fuses into two loops over the cache
            # (in fp32, like SDPA's kernel). SDPA's CPU kernel costs more than this arithmetic for a single query,
            # and inductor would turn a matmul form back into it.
            scores = (q.float() * k.float()).sum(-1, keepdim=True) * self.head_dim ** -0.5    # (B, H, Tk, 1)
            y = (scores.softmax(dim=2) * v.float()).sum(2, keepdim=True).to(v.dtype)          # (B, H, 1, D)
        elif whole_cache:
            y = F.scaled_dot_product_attention(q, k, v)
        elif Tq == Tk and q.device.type == "cpu" and not torch.compiler.is_exporting():
            # Training, evaluation, a prefill from empty: the blocked kernel above (CUDA keeps SDPA's flash kernel)
            H = q.size(1)
            y = blocked_attention(*(t.reshape(B * H, T, -1) for t in (q, k, v)), self.window, ATTN_BLOCK)
            y = y.view(B, H, T, -1)
        elif Tq == Tk and not self.window:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # A window, or prefill after a cached prefix: each query sees the keys the mask allows.
            mask = attention_mask(Tq, Tk, self.window, q.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    """relu^2: c_proj(relu(c_fc x)^2). SwiGLU: c_proj(silu(c_gate x) * c_fc x)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = config.mlp_hidden()
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=False)
        self.c_gate = nn.Linear(config.n_embd, hidden, bias=False) if config.mlp == "swiglu" else None
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=False)

    def forward(self, x):
        if self.c_gate is None:
            return self.c_proj(F.relu(self.c_fc(x)).square())
        return self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, kv_cache=None):
        x = x + self.attn(norm(x), cos, sin, kv_cache)
        return x + self.mlp(norm(x))


# -----------------------------------------------------------------------------
# lm_head + soft-cap + cross-entropy, fused in row chunks

class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of softcap(x @ W.T) against targets, with the gradient computed chunk by chunk in the
    forward pass (the loss is the graph's end, so d loss / d logits is known there). Only (chunk x vocab)
    logits are alive at a time and they stay in cache; backward just scales the stored grads of x and W."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk_rows):
        compute_dtype = x.dtype
        acc_dtype = torch.promote_types(compute_dtype, torch.float32)    # softmax math in fp32 (fp64 in tests)
        w = weight.to(compute_dtype)
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device)
        n_valid = (targets != IGNORE_INDEX).sum().clamp(min=1)
        total = torch.zeros((), dtype=acc_dtype, device=x.device)
        for start in range(0, x.size(0), chunk_rows):
            xc, tc = x[start:start + chunk_rows], targets[start:start + chunk_rows]
            capped = torch.tanh((xc @ w.t()).to(acc_dtype) / SOFTCAP)                  # (rows, V), in [-1, 1]
            # The cap bounds the logits to +-SOFTCAP, so exp needs no max subtracted (e^15 * vocab is far from
            # fp32's overflow): one exp serves both the log-sum-exp and the softmax.
            exps = torch.exp(capped * SOFTCAP)
            sums = exps.sum(dim=-1, keepdim=True)
            valid = tc != IGNORE_INDEX
            safe_t = tc.clamp(min=0)
            total += ((sums.squeeze(1).log() - SOFTCAP * capped.gather(1, safe_t[:, None]).squeeze(1)) * valid).sum()
            # d loss_i / d logits = softmax - onehot; through the cap: * (1 - tanh^2); masked rows get 0.
            grad = exps.div_(sums)
            grad.scatter_add_(1, safe_t[:, None], -torch.ones_like(sums))
            grad.mul_(1 - capped.square_()).mul_(valid[:, None])
            grad = grad.to(compute_dtype)
            grad_x[start:start + chunk_rows] = grad @ w
            grad_w += grad.t() @ xc
        ctx.save_for_backward(grad_x, grad_w, n_valid)
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_w, n_valid = ctx.saved_tensors
        scale = grad_out / n_valid
        return grad_x * scale.to(grad_x.dtype), grad_w * scale, None, None


def chunked_cross_entropy(x, weight, targets, chunk_rows: int = 256):
    """x (N, C) hidden states, weight (V, C) lm_head, targets (N,) -> mean loss over targets != IGNORE_INDEX."""
    with torch.autocast(x.device.type, enabled=False):    # dtypes are handled explicitly inside
        return ChunkedLinearCrossEntropy.apply(x, weight, targets, chunk_rows)


# -----------------------------------------------------------------------------
# The model

class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # cos/sin for 10x the training context (the engine may decode past it); not saved in checkpoints.
        self.rotary_len = config.sequence_len * 10
        head_dim = config.n_embd // config.n_head
        self.register_buffer("cos", torch.empty(1, self.rotary_len, 1, head_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(1, self.rotary_len, 1, head_dim // 2), persistent=False)
        self.ce_chunk_rows = 256    # rows per chunk of the fused loss; 0 = plain logits + F.cross_entropy

    @torch.no_grad()
    def init_weights(self):
        """Explicit init, so a model built on the meta device and moved with to_empty() is well defined."""
        nn.init.normal_(self.transformer.wte.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.lm_head.weight)
        for block in self.transformer.h:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc, block.mlp.c_gate):
                if lin is None:
                    continue
                fan_out, fan_in = lin.weight.shape
                nn.init.normal_(lin.weight, mean=0.0, std=min(1.0, math.sqrt(fan_out / fan_in)) / math.sqrt(fan_in))
            nn.init.zeros_(block.attn.c_proj.weight)   # each block starts as the identity
            nn.init.zeros_(block.mlp.c_proj.weight)
        self.cos.copy_(self._rotary()[0])
        self.sin.copy_(self._rotary()[1])

    def _rotary(self):
        head_dim = self.config.n_embd // self.config.n_head
        device = self.cos.device
        inv_freq = 1.0 / (ROTARY_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
        angles = torch.outer(torch.arange(self.rotary_len, dtype=torch.float32, device=device), inv_freq)
        return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]

    def get_device(self):
        return self.transformer.wte.weight.device

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        """idx (B, T) -> logits (B, T, V) fp32 soft-capped if targets is None, else the loss.

        loss_reduction "mean" (over targets != -1) or "none" (per-token (B, T) losses, 0 where ignored).
        With a kv_cache, positions continue from kv_cache.get_pos().
        """
        B, T = idx.shape
        t0 = kv_cache.get_pos() if kv_cache is not None else 0
        if t0 + T > self.rotary_len:
            raise ValueError(f"sequence position {t0 + T} is past the rotary table ({self.rotary_len} positions)")
        x = self.transformer.wte(idx)
        # Cast cos/sin to the activations' dtype so rotary does not promote bf16 back to fp32.
        act_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        cos = self.cos[:, t0:t0 + T].to(act_dtype)
        sin = self.sin[:, t0:t0 + T].to(act_dtype)
        x = norm(x).to(act_dtype)   # bf16 residual stream under autocast: no fp32 <-> bf16 copies per op
        for block in self.transformer.h:
            x = block(x, cos, sin, kv_cache)
        x = norm(x)

        if targets is None:
            logits = _upcast(self.lm_head(x))
            return SOFTCAP * torch.tanh(logits / SOFTCAP)
        if loss_reduction not in ("mean", "none"):
            raise ValueError(f"loss_reduction must be 'mean' or 'none', not {loss_reduction!r}")
        x, targets = x.reshape(B * T, -1), targets.reshape(-1)
        if self.ce_chunk_rows > 0 and loss_reduction == "mean" and torch.is_grad_enabled():
            return chunked_cross_entropy(x.to(act_dtype), self.lm_head.weight, targets, self.ce_chunk_rows)
        if self.ce_chunk_rows > 0 and not torch.is_grad_enabled():     # evaluation: per-token losses in chunks
            losses = torch.cat([self._token_losses(x[i:i + self.ce_chunk_rows], targets[i:i + self.ce_chunk_rows])
                                for i in range(0, B * T, self.ce_chunk_rows)])
        else:
            losses = self._token_losses(x, targets)
        if loss_reduction == "none":
            return losses.view(B, T)
        return losses.sum() / (targets != IGNORE_INDEX).sum().clamp(min=1)

    def _token_losses(self, x, targets):
        """Cross-entropy of each row of x (N, C) against targets (N,), 0 where ignored. Evaluation calls it on
        chunks of rows: the (rows x vocab) fp32 logits then stay in cache (1.21x faster at depth 4, 1.07x at 6)."""
        logits = SOFTCAP * torch.tanh(_upcast(self.lm_head(x)) / SOFTCAP)
        return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")

    @torch.no_grad()
    def generate(self, tokens: list[int], max_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 42):
        """Naive sampling without a cache (reference and quick samples; the engine is the fast path)."""
        device = self.get_device()
        rng = torch.Generator(device=device).manual_seed(seed)
        ids = torch.tensor([tokens], dtype=torch.long, device=device)
        for _ in range(max_tokens):
            logits = self.forward(ids[:, -self.config.sequence_len:])[:, -1, :]
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -float("inf"))
                nxt = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=rng)
            ids = torch.cat([ids, nxt], dim=1)
            yield nxt.item()

    # -------------------------------------------------------------------------
    # Accounting and optimizers

    def num_params(self) -> dict[str, int]:
        """Parameter counts by optimizer group."""
        counts = {
            "wte": self.transformer.wte.weight.numel(),
            "lm_head": self.lm_head.weight.numel(),
            "matrices": sum(p.numel() for p in self.transformer.h.parameters()),
        }
        counts["total"] = sum(counts.values())
        return counts

    def estimate_flops(self) -> int:
        """Training FLOPs per token: 6 per weight used in a matmul (forward + backward; the embedding is a lookup)
        plus attention scores and values, 12 * heads * head_dim * context per layer (a windowed layer's context is
        its window)."""
        c = self.config
        n = self.num_params()
        context = sum(c.layer_window(i) or c.sequence_len for i in range(c.n_layer))
        return 6 * (n["total"] - n["wte"]) + 12 * c.n_head * (c.n_embd // c.n_head) * context

    def setup_optimizers(self, unembedding_lr=0.004, embedding_lr=0.2, matrix_lr=0.02, weight_decay=0.0,
                         ns_dtype=None):
        """[AdamW for wte and lm_head, Muon for the block matrices] with nanochat's learning rates; the AdamW
        rates scale as (d_model / 768)^-0.5 so they transfer across widths."""
        from nanochat.optim import Muon, make_adamw
        scale = (self.config.n_embd / 768) ** -0.5
        adamw = make_adamw([
            {"params": [self.lm_head.weight], "lr": unembedding_lr * scale},
            {"params": [self.transformer.wte.weight], "lr": embedding_lr * scale},
        ], weight_decay=weight_decay)
        muon = Muon(list(self.transformer.h.parameters()), lr=matrix_lr, ns_dtype=ns_dtype)
        for opt in (adamw, muon):
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]
        return [adamw, muon]


def measure_matmul_flops(device, dtype: torch.dtype, sizes=(1024, 2048), seconds: float = 1.0) -> float:
    """Peak matmul FLOP/s of this device and dtype, measured now: the denominator of MFU.

    A peak is the best rate the hardware reaches, so this takes the fastest of many short timing windows (a busy
    neighbour slows some windows, not all) over square matrices of a few sizes (the fastest size depends on the
    caches: on 2 AMX cores bf16 reaches ~1.2 TFLOP/s at n=1024 and ~2.2 TFLOP/s at n=2048).
    """
    import time
    from nanochat.common import synchronize
    device = torch.device(device)
    rng = torch.Generator(device=device).manual_seed(0)    # leave the global RNG (model init) untouched
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype, generator=rng)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=rng)
        a @ b                                                   # warm-up (kernel choice, page faults)
        synchronize(device)
        end = time.perf_counter() + seconds / len(sizes)
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            a @ b
            a @ b
            synchronize(device)
            best = max(best, 2 * 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def build_model(config: GPTConfig, device) -> GPT:
    """Build on the meta device (no memory touched), move to `device` uninitialised, then init explicitly."""
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    model.init_weights()
    return model


# -----------------------------------------------------------------------------
# The calculator

def activation_bytes_per_sequence(model: GPT, dtype: torch.dtype) -> int:
    """Bytes autograd keeps for backward for one sequence, measured by hooking saved tensors during a real forward
    (parameters excluded, shared storages counted once)."""
    from nanochat.common import autocast_ctx
    device = model.get_device()
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        if not isinstance(t, nn.Parameter):
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        return t

    idx = torch.zeros(1, model.config.sequence_len, dtype=torch.long, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast_ctx(device, dtype):
        model(idx, idx)
    return total


def main():
    parser = argparse.ArgumentParser(description="Parameters, memory and FLOPs of a nanochat model")
    parser.add_argument("--depth", type=int, default=4, help="number of layers (width = 64 * depth)")
    parser.add_argument("--head-dim", type=int, default=128, help="attention head dimension")
    parser.add_argument("--n-kv-head", type=int, default=-1, help="key/value heads (-1 = as many as query heads)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="vocabulary size")
    parser.add_argument("--seq-len", type=int, default=512, help="context length")
    parser.add_argument("--batch", type=int, default=8, help="sequences per forward/backward (device batch size)")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                        help="compute dtype for the activation measurement (default: what this machine would use)")
    args = parser.parse_args()
    from nanochat.common import UserError, compute_dtype
    try:
        config = config_from_depth(args.depth, args.vocab_size, args.seq_len, args.head_dim, args.n_kv_head)
    except ValueError as e:
        raise UserError(str(e))
    device = torch.device("cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else compute_dtype(device)
    model = build_model(config, device)
    n = model.num_params()
    gib = 1024 ** 3
    # fp32 weights and grads; AdamW keeps two moments, Muon one momentum buffer.
    state_bytes = 4 * (2 * (n["wte"] + n["lm_head"]) + n["matrices"])
    weights_grads_state = 4 * n["total"] * 2 + state_bytes
    act = activation_bytes_per_sequence(model, dtype) * args.batch
    flops_tok = model.estimate_flops()
    print(f"config: {asdict(config)} (head dim {config.n_embd // config.n_head})")
    print(f"parameters: {n['total']:,} total = wte {n['wte']:,} + lm_head {n['lm_head']:,} + "
          f"block matrices {n['matrices']:,}")
    print(f"memory: weights {4 * n['total'] / gib:.3f} GiB + grads {4 * n['total'] / gib:.3f} GiB + "
          f"optimizer state {state_bytes / gib:.3f} GiB = {weights_grads_state / gib:.3f} GiB (fp32 master weights)")
    print(f"activations kept for backward at batch {args.batch} x {args.seq_len} ({str(dtype)[6:]} compute, "
          f"measured): {act / gib:.3f} GiB")
    print(f"training FLOPs: {flops_tok / 1e6:.1f} MFLOP/token, "
          f"{flops_tok * args.batch * args.seq_len / 1e9:.1f} GFLOP per forward+backward of {args.batch}x{args.seq_len}")
    print(f"Chinchilla-style 20 tokens/param: {20 * n['total'] / 1e6:.1f}M tokens, "
          f"{20 * n['total'] * flops_tok / 1e15:.2f} PFLOP")


if __name__ == "__main__":
    main()
