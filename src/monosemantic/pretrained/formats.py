"""Read an SAE folder written by another tool: what it holds, and the model and hook it names.

Two layouts:
- SAELens: `cfg.json` + `sae_weights.safetensors` (architectures standard / topk / jumprelu
  and the four transcoders, read by `sae.io.load_sae`); the model and hook come from
  `cfg.json`'s `metadata.model_name` / `metadata.hook_name` (top-level `model_name` /
  `hook_name` in pre-6 files), a transcoder's output hook from its `hook_name_out`.
- Gemma Scope 1 and 2 (`params.npz` / `params.safetensors`, maybe `config.json`): JumpReLU
  SAEs and per-layer transcoders, read by `gemma_scope` (layouts and hook names there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from monosemantic.errors import UserError
from monosemantic.pretrained import gemma_scope
from monosemantic.pretrained.layout import GEMMA_SCOPE_FILES, foreign_layout
from monosemantic.sae import SAE
from monosemantic.sae.io import CFG_FILENAME, WEIGHTS_FILENAME, load_sae


@dataclass(frozen=True)
class FolderInfo:
    """What another tool's SAE folder says about itself (read from its JSON only)."""

    folder: Path
    layout: str
    """`saelens` or `gemma-scope`."""
    model: str | None
    """The model the folder names (None: it names none)."""
    hook: str | None
    """The hook point the folder names, in our naming (None: none, or one we cannot map)."""
    weights: Path
    """The weights file (its size and time tell whether the folder changed)."""
    transcoder: bool | None = False
    """Whether the folder holds a transcoder (it writes another hook than it reads); None when
    it does not say (a Gemma Scope 1 folder: a transcoder when --hook-out is given)."""
    hook_out: str | None = None
    """A transcoder's output hook as the folder names it (None: an SAE, or none named)."""
    gemma_scope_1: bool = False
    """A Gemma Scope 1 folder (`params.npz`): its transcoders read the pre-MLP norm's output
    without the norm's gain (`gemma_scope.fold_pre_mlp_gain`)."""


def describe(folder: str | Path) -> FolderInfo:
    """The layout of a SAELens or Gemma Scope folder and the model and hook it names;
    UserError for anything else."""
    folder = Path(folder)
    layout = foreign_layout(folder)
    if layout == "saelens":
        raw = json.loads((folder / CFG_FILENAME).read_text())
        meta = raw.get("metadata") or {}
        model = meta.get("model_name") or raw.get("model_name")
        hook = meta.get("hook_name") or raw.get("hook_name")
        # SAELens' TranscoderConfig writes hook_name_out at the top level; metadata is a
        # fallback for hand-written files.
        hook_out = raw.get("hook_name_out") or meta.get("hook_name_out")
        transcoder = str(raw.get("architecture") or "").endswith("transcoder")
        return FolderInfo(folder, layout, model and str(model), hook and str(hook),
                          folder / WEIGHTS_FILENAME, transcoder,
                          str(hook_out) if transcoder and hook_out else None)
    if layout == "gemma-scope":
        gs = gemma_scope.read_folder(folder)
        return FolderInfo(folder, layout, gs.model, gs.hook, gs.weights, gs.transcoder,
                          gs.hook_out, gs.gemma_scope_1)
    raise UserError(f"{folder} is not an SAE folder this version reads: expected a SAELens "
                    f"folder ({CFG_FILENAME} + {WEIGHTS_FILENAME}) or a Gemma Scope folder "
                    f"({' or '.join(GEMMA_SCOPE_FILES)})")


def read_sae(info: FolderInfo, transcoder: bool = False) -> SAE:
    """The folder's SAE on the CPU, reproducing its encode and decode; `transcoder`: read a
    folder that does not say what it holds (`info.transcoder` None) as a transcoder."""
    if info.layout == "saelens":
        return load_sae(info.folder)
    return gemma_scope.read_sae(info.weights, bool(info.transcoder or transcoder))
