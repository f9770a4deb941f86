"""Sparse autoencoders: relu (Scaling Monosemanticity), topk, batchtopk, jumprelu; SAELens-format
save/load."""

from monosemantic.sae.base import SAE, SAEConfig, SAEOutput
from monosemantic.sae.factory import create_sae
from monosemantic.sae.io import load_sae, read_metadata, save_sae

__all__ = ["SAE", "SAEConfig", "SAEOutput", "create_sae", "load_sae", "read_metadata", "save_sae"]
