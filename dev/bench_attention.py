"""
Attention benchmark: forward + backward of causal attention at the training shapes, SDPA's CPU kernel against
nanochat/gpt.py's blocked_attention, taking turns (ABAB) in one process; plus each one's error against float64.

    flock /tmp/bench.lock python -m dev.bench_attention                     # bf16 where the CPU has it, else fp32
    flock /tmp/bench.lock python -m dev.bench_attention --dtype float32 --rounds 9

Shapes are (sequences x heads, length 512, head dim) of dev/bench_train's rows: d4 b8 (8 x 4 heads of 64),
d6 b32 (32 x 6 of 64), and base_train's default head dim 128 at depth 4 and 6, batch 8. Each time is one forward
and backward of one layer; the ratio is the median over rounds of SDPA's time / ours (> 1: ours is faster).
SDPA gets the (batch, heads, T, D) layout the model gave it. The error is the relative norm error of the output
and the three input gradients against SDPA in float64 on the first 4 heads, the worst of the four.
The last line is all results as JSON ("RESULTS {...}").
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from nanochat.common import compute_dtype
from nanochat.gpt import ATTN_BLOCK, blocked_attention

SHAPES = {"d4 b8": (8, 4, 64), "d6 b32": (32, 6, 64), "d4 hd128 b8": (8, 2, 128), "d6 hd128 b8": (8, 3, 128)}
T = 512


def sdpa_of(batch: int, heads: int):
    """SDPA on (batch, heads, T, D), the layout the model used to call it in (given a 3-D batch of heads its CPU
    kernel takes another, slower path: README.md, "Side by side with public nanochat")."""
    def sdpa(q, k, v):
        q, k, v = (t.view(batch, heads, *t.shape[1:]) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).flatten(0, 1)
    return sdpa


def blocked(q, k, v):
    return blocked_attention(q, k, v, 0, ATTN_BLOCK)


def forward_backward(fn, q, k, v, grad_out):
    """The output and the gradients of q, k, v (inputs are (heads, T, D); SDPA takes them as a batch of heads)."""
    qkv = [t.detach().requires_grad_() for t in (q, k, v)]
    out = fn(*qkv)
    out.backward(grad_out)
    return [out.detach()] + [t.grad for t in qkv]


def worst_error(fn, q, k, v, grad_out) -> float:
    got = forward_backward(fn, *(t[:4] for t in (q, k, v, grad_out)))
    exact = forward_backward(sdpa_of(1, 4), *(t[:4].double() for t in (q, k, v, grad_out)))
    return max(((a.double() - b).norm() / b.norm()).item() for a, b in zip(got, exact))


def main():
    p = argparse.ArgumentParser(description="SDPA vs blocked causal attention, forward + backward, on this CPU")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                   help="default: the compute dtype this machine trains in")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per shape (each times both, in turn)")
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated rows of SHAPES")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype) if args.dtype else compute_dtype(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dtype}, T={T}, block {ATTN_BLOCK}")
    results = {}
    for name in args.shapes.split(","):
        batch, heads, head_dim = SHAPES[name]
        g = torch.Generator().manual_seed(0)
        # q and k RMS-normed, as the model's QK-norm leaves them
        q, k = (F.rms_norm(torch.randn(batch * heads, T, head_dim, generator=g), (head_dim,)).to(dtype)
                for _ in range(2))
        v, grad_out = (torch.randn(batch * heads, T, head_dim, generator=g).to(dtype) for _ in range(2))
        sdpa = sdpa_of(batch, heads)
        times = {"sdpa": [], "blocked": []}
        for fn in (sdpa, blocked):
            forward_backward(fn, q, k, v, grad_out)        # warm-up
        for _ in range(args.rounds):
            for label, fn in (("sdpa", sdpa), ("blocked", blocked)):
                t0 = time.perf_counter()
                forward_backward(fn, q, k, v, grad_out)
                times[label].append(time.perf_counter() - t0)
        ratios = [a / b for a, b in zip(times["sdpa"], times["blocked"])]
        row = {"sdpa_ms": 1e3 * statistics.median(times["sdpa"]),
               "blocked_ms": 1e3 * statistics.median(times["blocked"]), "ratio": statistics.median(ratios),
               "sdpa_error": worst_error(sdpa_of(1, 4), q, k, v, grad_out),
               "blocked_error": worst_error(blocked, q, k, v, grad_out)}
        results[name] = row
        print(f"{name:12s} ({batch * heads} heads x {T} x {head_dim}): SDPA {row['sdpa_ms']:7.1f} ms | blocked "
              f"{row['blocked_ms']:7.1f} ms | ratio {row['ratio']:.2f}x | error vs float64: SDPA "
              f"{row['sdpa_error']:.2e}, blocked {row['blocked_error']:.2e}", flush=True)
    print("RESULTS " + json.dumps({"dtype": str(dtype), "threads": torch.get_num_threads(), "shapes": results}))


if __name__ == "__main__":
    main()
