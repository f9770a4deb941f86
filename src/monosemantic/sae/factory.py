"""The architecture registry: architecture name -> SAE class, and `create_sae`.

Adding an architecture is one module with its `SAE` subclass (declaring what the architecture is
through `SAE`'s class attributes and classmethods) and one entry here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monosemantic.config import ConfigError
from monosemantic.sae.base import SAE
from monosemantic.sae.batchtopk import BatchTopKSAE
from monosemantic.sae.jumprelu import JumpReLUSAE
from monosemantic.sae.matryoshka import MatryoshkaSAE
from monosemantic.sae.relu import ReluSAE
from monosemantic.sae.topk import TopKSAE

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig
    from monosemantic.sae.sharded import FeatureGroup

SAE_CLASSES: dict[str, type[SAE]] = {
    "relu": ReluSAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE, "jumprelu": JumpReLUSAE,
    "matryoshka": MatryoshkaSAE,
}
ARCHITECTURES: tuple[str, ...] = tuple(SAE_CLASSES)


def sae_class(architecture: str) -> type[SAE]:
    """The class of an architecture name; `ConfigError` naming the choices for an unknown one."""
    try:
        return SAE_CLASSES[architecture]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown SAE architecture {architecture!r}: choose one of "
                          f"{', '.join(ARCHITECTURES)}") from None


def create_sae(cfg: SAEConfig, shard: FeatureGroup | None = None) -> SAE:
    """A freshly initialised SAE (float32, CPU; move it with `.to(device)`). With `shard`, only
    the shard's features of the very same init (`SAE.keep_features_`), without ever holding
    the whole dictionary: the module is built without values, sliced, then initialised."""
    cfg.validate()
    cls = sae_class(cfg.architecture)
    if cfg.is_crosscoder:
        from monosemantic.sae.crosscoder import crosscoder_class

        cls = crosscoder_class(cls)
    if shard is None:
        return cls(cfg)
    with torch.device("meta"):
        sae = cls(cfg)
    sae.keep_features_(shard)
    sae.to_empty(device="cpu")
    sae.reset_parameters()
    sae.reset_buffers()
    return sae
