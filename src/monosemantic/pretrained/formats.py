"""Read an SAE folder written by another tool: what it holds, and the model and hook it names.

Two layouts:
- SAELens: `cfg.json` + `sae_weights.safetensors` (architectures standard / topk / jumprelu
  and the four transcoders, read by `sae.io.load_sae`); the model and hook come from
  `cfg.json`'s `metadata.model_name` / `metadata.hook_name` (top-level `model_name` /
  `hook_name` in pre-6 files), a transcoder's output hook from its `hook_name_out`.
- Gemma Scope: `params.npz` (Gemma Scope 1: `W_enc [d, F]`, `W_dec [F, d]`, `b_enc [F]`,
  `b_dec [d]`, `threshold [F]`) or `params.safetensors` (Gemma Scope 2, the same tensors under
  lower-case names `w_enc`, `w_dec`; either case is accepted). A JumpReLU SAE with no input
  transform: f = z·1[z > θ] with z = x @ W_enc + b_enc, x̂ = f @ W_dec + b_dec. Gemma Scope 2
  folders may hold a `config.json` with `model_name` and `hf_hook_point_in`; Gemma Scope 1
  folders name neither (give --model and --hook).

The layouts and key names follow SAELens' Gemma Scope loaders and their tests (read, not run
here); no real Gemma Scope file was opened to write this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monosemantic.errors import UserError
from monosemantic.pretrained.layout import GEMMA_SCOPE_CONFIG, GEMMA_SCOPE_FILES, foreign_layout
from monosemantic.sae import SAE, SAEConfig, create_sae
from monosemantic.sae.io import CFG_FILENAME, WEIGHTS_FILENAME, load_sae

_GEMMA_SCOPE_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
# Gemma Scope 2's config.json names the hooked HF module and whether its input or output is
# read; the output of decoder layer L is our blocks.L.hook_resid_post (before the final norm),
# the output of any other module is that module's raw path (hook_points reads its output).
_HF_RESID_POST = re.compile(r"^model\.layers\.(\d+)\.output$")
_HF_OUTPUT = re.compile(r"^(.+)\.output$")
# Gemma Scope 2 folder names, e.g. resid_post/layer_6_width_16k_l0_medium (SAELens infers the
# hook from them the same way when config.json is missing).
_GS2_RESID_POST_FOLDER = re.compile(r"(?:^|/)resid_post(?:_all)?/layer_(\d+)_width_[^/]+$")


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
    transcoder: bool = False
    """Whether the folder holds a transcoder (it writes another hook than it reads)."""
    hook_out: str | None = None
    """A transcoder's output hook as the folder names it (None: an SAE, or none named)."""


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
        cfg_raw = _gemma_scope_config(folder)
        if cfg_raw.get("hf_hook_point_out") or cfg_raw.get("affine_connection") is not None:
            raise UserError(f"{folder} is a Gemma Scope transcoder (its {GEMMA_SCOPE_CONFIG} "
                            "names an output hook): only Gemma Scope SAEs are supported "
                            "(SAELens transcoder folders are read)")
        arch = cfg_raw.get("architecture", "jump_relu")
        if arch not in ("jump_relu", "jumprelu"):
            raise UserError(f"{folder}: architecture {arch!r} in {GEMMA_SCOPE_CONFIG}; only "
                            "JumpReLU Gemma Scope SAEs are supported")
        weights = next(folder / n for n in GEMMA_SCOPE_FILES if (folder / n).is_file())
        model = cfg_raw.get("model_name")
        return FolderInfo(folder, layout, model and str(model),
                          _gemma_scope_hook(folder, cfg_raw.get("hf_hook_point_in")), weights)
    raise UserError(f"{folder} is not an SAE folder this version reads: expected a SAELens "
                    f"folder ({CFG_FILENAME} + {WEIGHTS_FILENAME}) or a Gemma Scope folder "
                    f"({' or '.join(GEMMA_SCOPE_FILES)})")


def read_sae(info: FolderInfo) -> SAE:
    """The folder's SAE on the CPU, reproducing its encode and decode."""
    if info.layout == "saelens":
        return load_sae(info.folder)
    tensors = _gemma_scope_tensors(info.weights)
    d_in, n_features = tensors["W_enc"].shape
    expected = {"W_enc": (d_in, n_features), "W_dec": (n_features, d_in), "b_enc": (n_features,),
                "b_dec": (d_in,), "threshold": (n_features,)}
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise UserError(f"{info.weights}: {name} has shape {tuple(tensors[name].shape)}, "
                            f"expected {shape} (W_enc is {d_in} x {n_features})")
    # Gemma Scope subtracts nothing from the input: apply_b_dec_to_input False.
    sae = create_sae(SAEConfig(architecture="jumprelu", d_in=int(d_in),
                               n_features=int(n_features), apply_b_dec_to_input=False))
    sae.load_inference_state(tensors)
    return sae.eval()


def _gemma_scope_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The five tensors by our names, float32, whatever the case of the file's keys."""
    if path.suffix == ".npz":
        with np.load(path) as npz:
            raw = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in npz.files}
    else:
        from safetensors.torch import load_file

        raw = {k: v.float() for k, v in load_file(str(path)).items()}
    by_lower = {k.lower(): v for k, v in raw.items()}
    missing = [n for n in _GEMMA_SCOPE_TENSORS if n.lower() not in by_lower]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)} (holds {', '.join(sorted(raw))}): "
                        "a Gemma Scope SAE has W_enc, W_dec, b_enc, b_dec and threshold")
    return {n: by_lower[n.lower()].contiguous() for n in _GEMMA_SCOPE_TENSORS}


def _gemma_scope_config(folder: Path) -> dict[str, Any]:
    path = folder / GEMMA_SCOPE_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"{path} is not valid JSON ({err})") from err
    return data if isinstance(data, dict) else {}


def _gemma_scope_hook(folder: Path, hf_module: str | None) -> str | None:
    """Our name for the hook the folder's config names (a module's output) or its folder name
    implies (residual stream); None when it says nothing we can map (then --hook is needed:
    a module's *input*, e.g. Gemma Scope 2's attention SAEs on o_proj's input, has no name
    here)."""
    if hf_module:
        match = _HF_RESID_POST.match(str(hf_module))
        if match:
            return f"blocks.{match.group(1)}.hook_resid_post"
        match = _HF_OUTPUT.match(str(hf_module))
        return match.group(1) if match else None
    match = _GS2_RESID_POST_FOLDER.search(folder.resolve().as_posix())
    return f"blocks.{match.group(1)}.hook_resid_post" if match else None
