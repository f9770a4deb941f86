"""Evaluation: reconstruction / sparsity metrics, the model's loss with the SAE spliced in, and
the `monosemantic eval` report."""

from monosemantic.evals.evaluate import evaluate_sae, reconstruction_pass
from monosemantic.evals.loss import SplicedLossAccumulator, ce_and_kl
from monosemantic.evals.metrics import (
    FeatureDensityAccumulator,
    ReconstructionAccumulator,
    reconstruction_metrics,
)
from monosemantic.evals.report import EvalConfig, run_eval
from monosemantic.evals.spliced import Splice, spliced_loss, spliced_loss_all

__all__ = [
    "EvalConfig",
    "FeatureDensityAccumulator",
    "ReconstructionAccumulator",
    "SplicedLossAccumulator",
    "ce_and_kl",
    "evaluate_sae",
    "reconstruction_metrics",
    "reconstruction_pass",
    "run_eval",
    "Splice",
    "spliced_loss",
    "spliced_loss_all",
]
