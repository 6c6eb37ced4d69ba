"""
Bits per byte: a loss that does not depend on the tokenizer, so models with different vocabularies compare.

    bpb = sum of cross-entropy (nats) over target tokens that stand for >= 1 byte / (ln 2 * their total bytes)

Special tokens (0 bytes, e.g. <|bos|>) and ignored targets (-1) count in neither sum.
Under torchrun each rank evaluates its own batches and the two sums are added across ranks, so every rank returns
the same bpb of all the batches together (tests/test_ddp.py checks it against one process).
Called by scripts/base_train.py (periodic val bpb) and scripts/base_loss.py.
"""

import math

import torch
import torch.distributed as dist

from nanochat.common import autocast_ctx


@torch.no_grad()
def evaluate_bpb(model, batches, steps: int, token_bytes: torch.Tensor, dtype: torch.dtype = torch.float32) -> float:
    """Average bpb of `model` over `steps` batches of (inputs, targets, ...) from the iterator `batches` (and over
    every rank's batches when torch.distributed is initialised: a collective, all ranks must call it)."""
    device = model.get_device()
    token_bytes = token_bytes.to(device)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    for _ in range(steps):
        x, y = next(batches)[:2]
        with autocast_ctx(device, dtype):
            loss = model(x, y, loss_reduction="none").view(-1)      # (B*T,), 0 where y == -1
        y = y.view(-1)
        nbytes = torch.where(y >= 0, token_bytes[y.clamp(min=0)], 0)
        total_nats += (loss.double() * (nbytes > 0)).sum()
        total_bytes += nbytes.sum()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total_nats)
        dist.all_reduce(total_bytes)
    if total_bytes.item() == 0:
        raise ValueError("no target bytes in the evaluated batches (only special or ignored tokens)")
    return total_nats.item() / (math.log(2) * total_bytes.item())
