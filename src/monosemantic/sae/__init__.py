"""Sparse autoencoders: relu (Scaling Monosemanticity), topk, batchtopk, jumprelu; SAELens-format
save/load."""

from monosemantic.sae.base import SAE, SAEOutput
from monosemantic.sae.config import SAEConfig
from monosemantic.sae.factory import ARCHITECTURES, create_sae, sae_class
from monosemantic.sae.io import load_sae, read_metadata, save_sae

__all__ = ["ARCHITECTURES", "SAE", "SAEConfig", "SAEOutput", "create_sae", "load_sae",
           "read_metadata", "sae_class", "save_sae"]
