"""monosemantic's training step, timed by the shared harness. Runs in the project's venv.

Calls the trainer's own public per-batch step (`train.trainer.Loop.step`) on a `TrainState` built
exactly as `train()` builds it (`create_sae` + Adam + feature tracker + metric sums), so what is
timed is the real hot loop: lr schedule, forward with the l1 warm-up scale, backward,
`before_optimizer_step`, gradient clipping at 1, Adam step, `after_optimizer_step`, the
dead-feature tracker and the metric accumulators. No logging, evals or checkpoints.
With `spec.weights` the SAE starts from those tensors instead of its own initialisation.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path

import harness
import torch

from monosemantic.sae import SAEConfig
from monosemantic.train.config import TrainConfig, resolve
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import Loop


class TrainerStep:
    """The trainer's per-batch step on a fresh run state (see the module docstring)."""

    def __init__(self, spec: harness.Spec, sample_BD: torch.Tensor):
        if spec.arch not in ("relu", "topk"):
            raise ValueError(f"monosemantic step: unsupported arch {spec.arch!r}")
        # `Loop` only looks for checkpoints in the run directory; `step` never writes to it.
        self.run_dir = tempfile.TemporaryDirectory(prefix="monosemantic-bench-")
        sae = SAEConfig(architecture=spec.arch, n_features=spec.n_features, k=spec.k)
        cfg = TrainConfig(out=Path(self.run_dir.name), sae=sae, batch_size=spec.batch_size,
                          steps=spec.warmup + spec.steps, seed=spec.seed, device="cpu")
        resolve(cfg, None, spec.d_in)
        device = torch.device("cpu")
        state = TrainState.create(cfg, spec.d_in, device)
        if spec.weights:  # the shared starting point (see benchmarks/sparse_weights.py)
            state.sae.load_inference_state(harness.load_weights(spec))
        else:
            state.sae.init_from_data(sample_BD)  # as `train()` does with the first batch
        # `data` is only read by `Loop.run`, which the benchmark does not call.
        self.loop = Loop(cfg, data=None, state=state, device=device)

    def __call__(self, x_BD: torch.Tensor) -> None:
        self.loop.step(x_BD)  # what `Loop.run` calls once per batch


if __name__ == "__main__":
    harness.main("monosemantic", metadata.version("monosemantic"), TrainerStep)
