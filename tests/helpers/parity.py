"""The small training run that the distributed tests compare across layouts (data-parallel,
feature-parallel, grids) against one process: the same options for every layout."""

from __future__ import annotations

ARCH_ARGS = {
    "relu": ["--sae.l1-coefficient", "0.3"],
    "topk": ["--sae.k", "2", "--sae.aux-k", "8"],
    "batchtopk": ["--sae.k", "2", "--sae.aux-k", "8"],
    "matryoshka": ["--sae.k", "2", "--sae.aux-k", "8"],
    "jumprelu": ["--sae.l0-coefficient", "0.01", "--sae.jumprelu-init-threshold", "0.05"],
}


def parity_args(arch: str) -> list[str]:
    """`monosemantic train` options of the compared run: 50 steps of 64 rows, checkpoints at
    25 and 50, and a 320-token dead window (5 steps) so that AuxK runs with a dead mask."""
    return ["--steps", "50", "--batch-size", "64", "--sae.architecture", arch,
            "--sae.n-features", "256", "--lr", "3e-3", "--log-every", "10", "--eval-every", "25",
            "--checkpoint-every", "25", "--device", "cpu", "--holdout-fraction", "0.1",
            "--dead-window-tokens", "320", *ARCH_ARGS[arch]]
