"""Which layout a folder holds, from its file names only (no torch: `RunDir.find` asks this of
every folder it is given)."""

from __future__ import annotations

from pathlib import Path

# As sae.io's CFG_FILENAME, WEIGHTS_FILENAME and METADATA_FILENAME (importing sae.io would
# import torch); tests/unit/test_pretrained_formats.py checks they agree.
SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
OUR_METADATA = "monosemantic.json"
GEMMA_SCOPE_FILES = ("params.npz", "params.safetensors")
GEMMA_SCOPE_CONFIG = "config.json"


def foreign_layout(folder: Path) -> str | None:
    """`saelens` or `gemma-scope` when `folder` holds such an SAE (and none of ours), else
    None."""
    if not folder.is_dir():
        return None
    if (folder / SAELENS_CFG).is_file() and (folder / SAELENS_WEIGHTS).is_file():
        return None if (folder / OUR_METADATA).is_file() else "saelens"
    if any((folder / name).is_file() for name in GEMMA_SCOPE_FILES):
        return "gemma-scope"
    return None
