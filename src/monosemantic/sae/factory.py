"""`create_sae`: the architecture name in `SAEConfig` → the module class."""

from __future__ import annotations

from monosemantic.sae.base import SAE, SAEConfig
from monosemantic.sae.batchtopk import BatchTopKSAE
from monosemantic.sae.jumprelu import JumpReLUSAE
from monosemantic.sae.relu import ReluSAE
from monosemantic.sae.topk import TopKSAE

SAE_CLASSES: dict[str, type[SAE]] = {
    "relu": ReluSAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE, "jumprelu": JumpReLUSAE,
}


def create_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE (float32, CPU; move it with `.to(device)`)."""
    cfg.validate()
    return SAE_CLASSES[cfg.architecture](cfg)
