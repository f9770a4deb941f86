"""Gradient clipping in the training step (`Loop.step`, `--grad-clip`): a step whose gradient
norm exceeds the limit reaches Adam with the same direction scaled to the limit; a smaller one
reaches it unchanged."""

from pathlib import Path

import pytest
import torch

from monosemantic.train.config import TrainConfig, resolve
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import Loop

D = 16


def grads_seen_by_adam(tmp_path: Path, grad_clip: float, x_BD: torch.Tensor) -> torch.Tensor:
    """The first real training step on `x_BD` from the seeded initial SAE; returns the
    gradient, all parameters flattened, as the optimizer step received it (the step frees it
    afterwards). Of a 10,000-step run, so the sparsity warm-up scales its penalty by 1/500:
    the loss is the reconstruction's, and its gradient grows with `x_BD`."""
    cfg = TrainConfig(out=tmp_path / f"clip{grad_clip}", batch_size=x_BD.shape[0],
                      steps=10_000, device="cpu", grad_clip=grad_clip)
    resolve(cfg, None)
    state = TrainState.create(cfg, D, torch.device("cpu"))
    loop = Loop(cfg, data=None, state=state, device=torch.device("cpu"))
    seen = []

    def record(optimizer, _args, _kwargs):
        seen.append(torch.cat([p.grad.flatten() for group in optimizer.param_groups
                               for p in group["params"] if p.grad is not None]).clone())

    state.optimizer.register_step_pre_hook(record)
    loop.step(x_BD)
    assert len(seen) == 1
    return seen[0]


def batch(scale: float) -> torch.Tensor:
    return scale * torch.randn(64, D, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("limit", [1.0, 0.25])
def test_a_large_gradient_is_scaled_to_the_limit(tmp_path, limit):
    x_BD = batch(1000.0)  # a huge reconstruction loss
    raw = grads_seen_by_adam(tmp_path, 0.0, x_BD)  # 0 disables clipping
    clipped = grads_seen_by_adam(tmp_path, limit, x_BD)
    assert float(raw.norm()) > 100 * limit
    assert float(clipped.norm()) == pytest.approx(limit, rel=1e-4)
    assert torch.allclose(clipped, raw * (limit / raw.norm()), rtol=1e-4, atol=1e-9)


def test_a_gradient_within_the_limit_is_left_unchanged(tmp_path):
    x_BD = batch(1e-3)
    raw = grads_seen_by_adam(tmp_path, 0.0, x_BD)
    clipped = grads_seen_by_adam(tmp_path, 1.0, x_BD)
    assert 0 < float(raw.norm()) < 1.0
    assert torch.equal(clipped, raw)
