"""
Tests of the optimizers and schedule: Newton-Schulz orthogonalises, Muon's update is near-orthogonal and scaled,
Muon state survives a save/load, every parameter gets exactly one optimizer with nanochat's rates.

    pytest tests/test_optim.py -q
"""

import copy
import math

import pytest
import torch

from nanochat.gpt import build_model, config_from_depth
from nanochat.optim import Muon, lr_multiplier, muon_momentum, newton_schulz5, set_schedule


@pytest.mark.parametrize("shape", [(64, 64), (32, 128), (128, 32), (3, 64, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_singular_values_near_one(shape, dtype):
    torch.manual_seed(0)
    # Singular values spread over 1..10 (a random square Gaussian has some near 0, which no 5-step
    # iteration lifts, and Muon does not need it to).
    U, _, Vh = torch.linalg.svd(torch.randn(shape), full_matrices=False)
    G = U @ torch.diag_embed(torch.logspace(0, 1, min(shape[-2:])).expand(*shape[:-2], -1)) @ Vh
    X = newton_schulz5(G, dtype=dtype).float()
    assert X.shape == G.shape
    s = torch.linalg.svdvals(X)
    # The quintic is tuned for speed: singular values land in roughly [0.7, 1.2], not exactly 1.
    assert s.min() > 0.6 and s.max() < 1.3, (s.min(), s.max())
    # Same singular vectors as G: X is close to U V^T of the SVD.
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cos = (X * (U @ Vh)).sum(dim=(-2, -1)) / (X.norm(dim=(-2, -1)) * (U @ Vh).norm(dim=(-2, -1)))
    assert (cos > 0.97).all()


@pytest.mark.parametrize("shape", [(48, 48), (96, 24), (24, 96)])
def test_muon_update_is_near_orthogonal_and_scaled(shape):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape))
    start = p.detach().clone()
    opt = Muon([p], lr=0.1, momentum=0.9, ns_dtype=torch.float32)
    p.grad = torch.randn(shape)
    opt.step()
    rows, cols = shape
    update = (start - p.detach()) / (0.1 * math.sqrt(max(1, rows / cols)))
    s = torch.linalg.svdvals(update)
    assert s.max() < 1.3 and (s > 0.6).float().mean() > 0.9     # near-orthogonal (up to a few tiny directions)
    # It moves against the gradient.
    assert (update * p.grad).sum() > 0


def test_muon_rejects_vectors_and_state_round_trips():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(5))])
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(16, 16)) for _ in range(3)] + [torch.nn.Parameter(torch.randn(16, 32))]
    opt = Muon(params, ns_dtype=torch.float32)
    assert len(opt.param_groups) == 2            # one batched group per shape
    grads = [[torch.randn_like(p) for p in params] for _ in range(3)]
    for p, g in zip(params, grads[0]):
        p.grad = g
    opt.step()
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(opt.state_dict())     # state_dict() shares tensors with the live state
    for step_grads in grads[1:]:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
    expected = [p.detach().clone() for p in params]
    # Restart from the saved point with a fresh optimizer: same result.
    with torch.no_grad():
        for p, s in zip(params, saved_params):
            p.copy_(s)
    opt2 = Muon(params, ns_dtype=torch.float32)
    opt2.load_state_dict(saved_state)
    for step_grads in grads[1:]:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt2.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e)


def test_schedule():
    assert lr_multiplier(0.0) == 1.0 and lr_multiplier(0.79) == 1.0
    assert lr_multiplier(0.8) == pytest.approx(1.0)
    assert lr_multiplier(0.9) == pytest.approx(0.5)
    assert lr_multiplier(1.0) == 0.0 and lr_multiplier(1.5) == 0.0      # a time budget can overshoot
    assert lr_multiplier(0.9, final_lr_frac=0.1) == pytest.approx(0.55)
    assert lr_multiplier(0.05, warmup_ratio=0.1) == pytest.approx(0.5)
    assert lr_multiplier(0.5, warmdown_ratio=0.0) == 1.0
    assert muon_momentum(0) == pytest.approx(0.85) and muon_momentum(150) == pytest.approx(0.90)
    assert muon_momentum(300) == muon_momentum(10_000) == pytest.approx(0.95)


def test_setup_optimizers_groups_and_rates():
    model = build_model(config_from_depth(2, 300, 32, head_dim=64), "cpu")     # d_model 128
    adamw, muon = model.setup_optimizers()
    owned = [p for opt in (adamw, muon) for g in opt.param_groups for p in g["params"]]
    assert len(owned) == len({id(p) for p in owned}) == len(list(model.parameters()))
    scale = (128 / 768) ** -0.5
    lrs = {id(g["params"][0]): g["lr"] for g in adamw.param_groups}
    assert lrs[id(model.lm_head.weight)] == pytest.approx(0.004 * scale)
    assert lrs[id(model.transformer.wte.weight)] == pytest.approx(0.2 * scale)
    assert adamw.defaults["betas"] == (0.8, 0.95) and adamw.defaults["eps"] == 1e-10
    assert all(g["lr"] == 0.02 for g in muon.param_groups)
    set_schedule([adamw, muon], 95, 0.95)
    assert muon.param_groups[0]["lr"] == pytest.approx(0.02 * 0.25)
    assert muon.param_groups[0]["momentum"] == pytest.approx(muon_momentum(95))
