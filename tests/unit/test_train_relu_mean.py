"""relu on activations with a large shared mean (as residual streams have): started from the
paper's b_dec = 0 a short run spends its features on the mean, and every decoder row ends up
near the same direction; started from the data's mean (relu's default `b_dec_init`) the
dictionary spreads out. Same trainer step as real runs (`Loop.step`: schedules, clipping)."""

from pathlib import Path

import numpy as np
import torch

from helpers.train_data import sparse_activations
from monosemantic.findings.matching import nearest_twin_cosines
from monosemantic.train.config import TrainConfig, resolve
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import Loop

D, BATCH, STEPS = 32, 256, 300


def rows_with_a_large_mean() -> torch.Tensor:
    """Sparse codes of 48 random directions plus a fixed offset 4x the rows' mean norm, scaled
    (as the trainer's inputs are) so that E||x||^2 = d."""
    x_ND, _ = sparse_activations(n_rows=16 * BATCH, d=D, n_true=48, active=3, seed=0)
    mean_D = torch.randn(D, generator=torch.Generator().manual_seed(1))
    x_ND = x_ND + mean_D / mean_D.norm() * 4.0 * x_ND.norm(dim=1).mean()
    return x_ND * (D / x_ND.square().sum(1).mean()).sqrt()


def train(tmp_path: Path, x_ND: torch.Tensor, **sae: object) -> tuple[float, float]:
    """(median nearest-twin decoder cosine of the firing features, variance explained) after
    a short lr 1e-3 run at lambda = 1."""
    torch.manual_seed(0)
    cfg = TrainConfig(out=tmp_path / "run", batch_size=BATCH, steps=STEPS, device="cpu",
                      lr=1e-3)
    cfg.sae.n_features, cfg.sae.l1_coefficient = 64, 1.0
    for name, value in sae.items():
        setattr(cfg.sae, name, value)
    resolve(cfg, None)
    state = TrainState.create(cfg, D, torch.device("cpu"))
    state.sae.init_from_data(x_ND[:BATCH])
    loop = Loop(cfg, data=None, state=state, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(2)
    for _ in range(STEPS):
        loop.step(x_ND[torch.randint(0, x_ND.shape[0], (BATCH,), generator=gen)])
    with torch.no_grad():
        f_NF = state.sae.encode(x_ND)
        x_hat_ND = state.sae.decode(f_NF)
    alive_F = (f_NF > 0).any(0).numpy()
    twin = float(np.median(nearest_twin_cosines(state.sae.W_dec.detach(), alive_F)))
    ve = 1 - float((x_ND - x_hat_ND).square().sum() / (x_ND - x_ND.mean(0)).square().sum())
    return twin, ve


def test_relu_does_not_collapse_onto_a_large_mean(tmp_path):
    x_ND = rows_with_a_large_mean()
    twin, ve = train(tmp_path, x_ND)
    assert twin < 0.8
    papers_twin, papers_ve = train(tmp_path / "zero", x_ND, b_dec_init="zero")
    assert papers_twin > 0.95  # the collapse the default avoids
    assert ve > papers_ve + 0.2
