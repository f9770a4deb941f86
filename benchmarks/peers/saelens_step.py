"""SAELens's training step, timed by the shared harness. Runs inside benchmarks/.venvs/saelens.

Uses SAELens's own trainer: `SAETrainer.step(batch)` is its public per-batch seam (what `fit()`
calls): activation scaler, `training_forward_pass` (MSE + the architecture's auxiliary loss),
dead-feature statistics, backward, gradient-norm clipping at 1, Adam step, zero_grad and the
lr / coefficient schedulers. No wandb logging, no evals, no checkpoints.

`relu` is SAELens's `standard` SAE (ReLU, L1 penalty weighted by decoder norms, decoder rows
initialised at norm 0.1) with l1_coefficient 5; `topk` is its `topk` SAE with AuxK. Other
options stay at SAELens's defaults, except that with `spec.weights` (shared trained weights) the
standard SAE loads them and encodes x instead of x − b_dec, the function they were trained as.
"""

from __future__ import annotations

import math

import harness
import torch
from sae_lens import __version__
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer


def build(spec: harness.Spec, sample_BD: torch.Tensor) -> harness.Step:
    if spec.arch == "relu":
        # With shared weights, encode x rather than x − b_dec, as the weights were trained to
        # (the Scaling Monosemanticity recipe); from init keep SAELens's default.
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(
            d_in=spec.d_in, d_sae=spec.n_features, l1_coefficient=5.0,
            **({"apply_b_dec_to_input": False} if spec.weights else {})))
        lr = 5e-5
    elif spec.arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(
            d_in=spec.d_in, d_sae=spec.n_features, k=spec.k))
        lr = 2e-4 / math.sqrt(spec.n_features / 2**14)
    else:
        raise ValueError(f"SAELens step: unsupported arch {spec.arch!r}")
    if spec.weights:  # the shared starting point (see benchmarks/sparse_weights.py)
        with torch.no_grad():
            for name, tensor in harness.load_weights(spec).items():
                getattr(sae, name).copy_(tensor)
    total_steps = spec.warmup + spec.steps
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total_steps * spec.batch_size,
        train_batch_size_samples=spec.batch_size,
        lr=lr, lr_end=lr / 10, device="cpu", autocast=False,  # lr_end: as its runner sets it
    )
    # `step` never reads the data provider; the harness feeds the batches.
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(()))

    def step(x_BD: torch.Tensor) -> None:
        trainer.step(x_BD)

    return step


if __name__ == "__main__":
    harness.main("SAELens", __version__, build)
