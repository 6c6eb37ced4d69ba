"""
Optimizers and the learning-rate schedule shared by every training script.

- Muon (MomentUm Orthogonalized by Newton-Schulz) for the 2-D matrices inside the transformer blocks: Nesterov
  momentum, then the update is replaced by the nearest (semi-)orthogonal matrix, computed with a quintic
  Newton-Schulz iteration. It needs no communication of its own: under DDP every rank steps on the same
  averaged gradients (nanochat/train.py), so the CPU path has no distributed code.
- AdamW for the embedding and the lm_head: torch's own implementation (fused kernel where the device has one),
  with betas (0.8, 0.95) and eps 1e-10. A second copy of AdamW here would only be a second place for bugs.
- lr_multiplier(): constant, then linear warmdown to final_lr_frac over the last warmdown_ratio of the run.
- muon_momentum(): 0.85 -> 0.95 over the first 300 steps.

Used through GPT.setup_optimizers(); tested by `pytest tests/test_optim.py`.
"""

import math

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)


@torch.no_grad()
def newton_schulz5(G: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximately orthogonalise G (..., rows, cols): returns ~U V^T of its SVD, with singular values pushed into
    roughly [0.7, 1.2] (the quintic's coefficients trade exactness for speed, which Muon does not need).
    Runs in `dtype` (bf16 is standard: the iteration is robust to its rounding)."""
    a, b, c = NS_COEFFS
    X = G.to(dtype)
    tall = G.size(-2) > G.size(-1)
    if tall:                         # iterate on the wide orientation: X @ X.T is the smaller square
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)     # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters. Matrices of the same shape are orthogonalised together in one batched call.

    lr: step size of the orthogonal update, scaled by sqrt(max(1, rows / cols)) so tall matrices move as far
    per element as wide ones. momentum: Nesterov momentum coefficient (the schedule sets it per step).
    ns_dtype: dtype of the Newton-Schulz iteration (None = bf16 where the CPU/GPU runs it natively, else fp32).
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 ns_dtype: torch.dtype | None = None):
        params = list(params)
        for p in params:
            if p.ndim != 2:
                raise ValueError(f"Muon only takes 2-D matrices; got a parameter of shape {tuple(p.shape)} "
                                 "(give embeddings, heads and vectors to AdamW)")
        if ns_dtype is None and params:
            from nanochat.common import compute_dtype
            ns_dtype = compute_dtype(params[0].device)
        # One group per shape, so each group is orthogonalised as one stacked batch.
        shapes = sorted({tuple(p.shape) for p in params})
        groups = [{"params": [p for p in params if tuple(p.shape) == s]} for s in shapes]
        super().__init__(groups, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      ns_dtype=ns_dtype))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = torch.stack([p.grad for p in params])
            if "momentum_buffer" not in self.state[params[0]]:
                # One stacked buffer per group, kept on the group's first parameter (state_dict-friendly).
                self.state[params[0]]["momentum_buffer"] = torch.zeros_like(grads)
            buf = self.state[params[0]]["momentum_buffer"]
            momentum = group["momentum"]
            buf.lerp_(grads, 1 - momentum)
            update = grads.lerp_(buf, momentum) if group["nesterov"] else buf
            update = newton_schulz5(update, group["ns_steps"], group["ns_dtype"])
            rows, cols = params[0].shape
            scale = -group["lr"] * math.sqrt(max(1.0, rows / cols))
            for p, u in zip(params, update.unbind(0)):
                p.add_(u.to(p.dtype), alpha=scale)


def make_adamw(param_groups, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0) -> torch.optim.AdamW:
    """AdamW with nanochat's settings (see the module docstring); the fused kernel where torch has one for the device (CPU and CUDA do)."""
    device = param_groups[0]["params"][0].device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(param_groups, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)


def lr_multiplier(progress: float, warmup_ratio: float = 0.0, warmdown_ratio: float = 0.2,
                  final_lr_frac: float = 0.0) -> float:
    """Multiplier of the base learning rates at `progress` in [0, 1] of the run (step / num_iterations, or
    elapsed / budget for a time-budgeted run): linear warmup, constant, linear warmdown to final_lr_frac."""
    if progress < warmup_ratio:
        return max(progress / warmup_ratio, 1e-3)
    if warmdown_ratio <= 0 or progress < 1 - warmdown_ratio:
        return 1.0
    left = max(0.0, 1.0 - progress) / warmdown_ratio       # 1 -> 0 over the warmdown
    return left + (1 - left) * final_lr_frac


def muon_momentum(step: int) -> float:
    frac = min(step / 300, 1.0)
    return (1 - frac) * 0.85 + frac * 0.95


def set_schedule(optimizers, step: int, progress: float, **schedule) -> float:
    """Apply lr_multiplier(progress) and Muon's momentum ramp (by step) to every group; returns the multiplier."""
    mult = lr_multiplier(progress, **schedule)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * mult
            if isinstance(opt, Muon):
                group["momentum"] = muon_momentum(step)
    return mult
