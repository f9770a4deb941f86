"""Gemma Scope folders: JumpReLU SAEs and per-layer transcoders, their tensors and hooks.

Layouts (from SAELens' and circuit-tracer's Gemma Scope loaders, Google's Gemma Scope 2
tutorial and configs copied from the hub by third parties; no real file was opened here):
- Gemma Scope 1 (`params.npz`, no config): `W_enc [d, F]`, `W_dec [F, d]`, `b_enc [F]`,
  `b_dec [d]`, `threshold [F]`. Its transcoders (`google/gemma-scope-2b-pt-transcoders`,
  folders `layer_L/width_16k/average_l0_N`) hold the same five tensors: nothing in the folder
  tells them from an SAE or names a hook.
- Gemma Scope 2 (`params.safetensors`, lower-case `w_enc`, `w_dec`; maybe
  `affine_skip_connection [d_in, d_out]`, applied as x @ it) and a `config.json`: `type`
  (`sae`, `transcoder`, `clt`, `crosscoder`), `hf_hook_point_in`, `hf_hook_point_out` (the
  same as the input for an SAE), `affine_connection`, `model_name`, `architecture`.

Forward: z = x·W_enc + b_enc, f = z·1[z > θ] (ReLU'd: a negative θ acts as 0),
ŷ = f·W_dec + b_dec (+ x·affine_skip_connection).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from monosemantic.errors import UserError
from monosemantic.pretrained.layout import GEMMA_SCOPE_CONFIG, GEMMA_SCOPE_FILES
from monosemantic.sae import SAE, SAEConfig, create_sae

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
SKIP_TENSOR = "affine_skip_connection"
# Gemma Scope 2 names the hooked HF module and whether its input or output is read. The output
# of decoder layer L is our blocks.L.hook_resid_post (before the final norm); the outputs of
# the pre- and post-MLP norms of Gemma 2/3 are our hook_mlp_in (the MLP's input) and
# hook_mlp_out (what the block adds); any other module's output is that module's raw path.
_HF_LAYERS = r"model\.(?:language_model\.)?layers\.(\d+)"
_HF_RESID_POST = re.compile(rf"^{_HF_LAYERS}\.output$")
_HF_MLP_SITE = re.compile(rf"^{_HF_LAYERS}\.(pre|post)_feedforward_layernorm\.output$")
_HF_OUTPUT = re.compile(r"^(.+)\.output$")
# Gemma Scope 2 folder names, e.g. resid_post/layer_6_width_16k_l0_medium (SAELens infers the
# hook from them the same way when config.json is missing) and transcoder_all/layer_5_..._affine.
_GS2_RESID_POST_FOLDER = re.compile(r"(?:^|/)resid_post(?:_all)?/layer_(\d+)_width_[^/]+$")
_GS2_TRANSCODER_FOLDER = re.compile(r"(?:^|/)transcoder(?:_all)?/layer_(\d+)_width_[^/]+$")
# Gemma Scope 1's transcoder repository, as a hub spec or in the HF cache's folder name
# (models--google--gemma-scope-2b-pt-transcoders/snapshots/...).
_GS1_TRANSCODER_REPO = re.compile(r"gemma-scope-[^/]*-transcoders(?:/|$)")
_TRANSCODER_TYPES = ("transcoder",)
_REFUSED_TYPES = {"clt": "cross-layer transcoder", "crosscoder": "crosscoder"}


@dataclass(frozen=True)
class GemmaScopeFolder:
    """What a Gemma Scope folder says about itself (its config.json and its path)."""

    weights: Path
    model: str | None
    hook: str | None
    """Our name of the hook it reads (None: the folder says nothing we can map)."""
    transcoder: bool | None
    """True / False when the folder says; None when it does not (Gemma Scope 1 folders:
    --hook-out then makes it a transcoder)."""
    hook_out: str | None
    """Our name of the hook a transcoder writes (None: not said, or an SAE)."""
    gemma_scope_1: bool
    """A `params.npz` folder (Gemma Scope 1)."""


def read_folder(folder: Path) -> GemmaScopeFolder:
    """Describe a Gemma Scope folder; UserError for the kinds not read here."""
    cfg = _config(folder)
    kind = str(cfg.get("type") or "")
    if kind in _REFUSED_TYPES:
        raise UserError(f"{folder} holds a Gemma Scope 2 {_REFUSED_TYPES[kind]} (type {kind!r} "
                        f"in its {GEMMA_SCOPE_CONFIG}): only Gemma Scope SAEs and per-layer "
                        "transcoders are read as pretrained run views")
    arch = cfg.get("architecture", "jump_relu")
    if arch not in ("jump_relu", "jumprelu"):
        raise UserError(f"{folder}: architecture {arch!r} in {GEMMA_SCOPE_CONFIG}; only "
                        "JumpReLU Gemma Scope SAEs and transcoders are supported")
    weights = next(folder / n for n in GEMMA_SCOPE_FILES if (folder / n).is_file())
    path = folder.resolve().as_posix()
    hf_in, hf_out = cfg.get("hf_hook_point_in"), cfg.get("hf_hook_point_out")
    transcoder: bool | None
    if kind in _TRANSCODER_TYPES or (hf_in and hf_out and hf_out != hf_in):
        transcoder = True
    elif cfg:
        transcoder = False  # a config that names no transcoder: type "sae" (or older files)
    elif _GS2_TRANSCODER_FOLDER.search(path) or _GS1_TRANSCODER_REPO.search(path):
        transcoder = True
    else:
        transcoder = None
    hook, hook_out = _hf_hook(hf_in), (_hf_hook(hf_out) if transcoder else None)
    if not cfg:
        hook, hook_out = _hooks_from_folder_name(path)
    return GemmaScopeFolder(weights, str(cfg["model_name"]) if cfg.get("model_name") else None,
                            hook, transcoder, hook_out if transcoder else None,
                            weights.suffix == ".npz")


def read_sae(weights: Path, transcoder: bool) -> SAE:
    """The SAE (or, with `transcoder`, the transcoder) in `weights`, on the CPU, in eval mode."""
    tensors = _tensors(weights)
    d_in, n_features = tensors["W_enc"].shape
    d_out = int(tensors["W_dec"].shape[1]) if tensors["W_dec"].ndim == 2 else -1
    expected = {"W_enc": (d_in, n_features), "W_dec": (n_features, d_out),
                "b_enc": (n_features,), "b_dec": (d_out,), "threshold": (n_features,)}
    if not transcoder:
        expected.update(W_dec=(n_features, d_in), b_dec=(d_in,))
    skip = tensors.pop(SKIP_TENSOR, None)
    if skip is not None:
        expected[SKIP_TENSOR] = (d_in, d_out)
        tensors[SKIP_TENSOR] = skip
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise UserError(f"{weights}: {name} has shape {tuple(tensors[name].shape)}, "
                            f"expected {shape} (W_enc is {d_in} x {n_features})")
    if skip is not None and not transcoder:
        raise UserError(f"{weights} holds an {SKIP_TENSOR}, which only a transcoder has: give "
                        "--hook-out (the hook it writes)")
    options: dict[str, Any] = {}
    if transcoder:
        options = {"d_out": d_out, "skip": skip is not None}
        if skip is not None:
            # Gemma Scope 2 adds x @ affine_skip_connection; ours adds x @ W_skipᵀ.
            tensors["W_skip"] = tensors.pop(SKIP_TENSOR).T.contiguous()
    # Gemma Scope subtracts nothing from the input: apply_b_dec_to_input False.
    sae = create_sae(SAEConfig(architecture="jumprelu", d_in=int(d_in),
                               n_features=int(n_features), apply_b_dec_to_input=False,
                               **options))
    sae.load_inference_state(tensors)
    return sae.eval()


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors by our names, float32, whatever the case of the file's keys."""
    if path.suffix == ".npz":
        with np.load(path) as npz:
            raw = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in npz.files}
    else:
        from safetensors.torch import load_file

        raw = {k: v.float() for k, v in load_file(str(path)).items()}
    by_lower = {k.lower(): v for k, v in raw.items()}
    missing = [n for n in TENSORS if n.lower() not in by_lower]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)} (holds {', '.join(sorted(raw))}): "
                        "a Gemma Scope SAE has W_enc, W_dec, b_enc, b_dec and threshold")
    out = {n: by_lower[n.lower()].contiguous() for n in TENSORS}
    if SKIP_TENSOR in by_lower:
        out[SKIP_TENSOR] = by_lower[SKIP_TENSOR].contiguous()
    return out


def _config(folder: Path) -> dict[str, Any]:
    path = folder / GEMMA_SCOPE_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"{path} is not valid JSON ({err})") from err
    return data if isinstance(data, dict) else {}


def _hf_hook(hf_module: Any) -> str | None:
    """Our name for the HF module output a Gemma Scope 2 config names; None for what has no
    name here (a module's *input*, e.g. the attention SAEs' o_proj input: --hook needed)."""
    if not hf_module:
        return None
    name = str(hf_module)
    match = _HF_RESID_POST.match(name)
    if match:
        return f"blocks.{match.group(1)}.hook_resid_post"
    match = _HF_MLP_SITE.match(name)
    if match:
        site = "hook_mlp_in" if match.group(2) == "pre" else "hook_mlp_out"
        return f"blocks.{match.group(1)}.{site}"
    match = _HF_OUTPUT.match(name)
    return match.group(1) if match else None


def _hooks_from_folder_name(path: str) -> tuple[str | None, str | None]:
    """(hook, hook_out) a Gemma Scope 2 folder's name implies without config.json."""
    match = _GS2_RESID_POST_FOLDER.search(path)
    if match:
        return f"blocks.{match.group(1)}.hook_resid_post", None
    match = _GS2_TRANSCODER_FOLDER.search(path)
    if match:
        layer = match.group(1)
        return f"blocks.{layer}.hook_mlp_in", f"blocks.{layer}.hook_mlp_out"
    return None, None


def pre_mlp_norm(lm: LoadedModel, hook: str) -> str:
    """The module path of the pre-MLP norm whose output `hook` is; UserError unless `hook` is
    `blocks.L.hook_mlp_in` of a Gemma 2/3 model (works on `models.load_model_layout`'s
    weightless model too)."""
    point = lm.hook_point(hook)
    if lm.family != "gemma3" or point.kind != "mlp_in":
        raise UserError(f"a Gemma Scope 1 transcoder reads Gemma 2's pre-MLP norm output "
                        f"without its gain: give --hook blocks.L.hook_mlp_in of a Gemma 2/3 "
                        f"model (got {hook} of a {lm.family} model)")
    return f"{point.module_path.rsplit('.', 1)[0]}.pre_feedforward_layernorm"


@torch.no_grad()
def fold_pre_mlp_gain(sae: SAE, lm: LoadedModel, hook: str) -> None:
    """Make a Gemma Scope 1 transcoder read `hook` (`blocks.L.hook_mlp_in`) of `lm` as is.

    Gemma Scope 1 folded the pre-MLP RMSNorm's gain g = 1 + weight into the MLP and trained its
    transcoders on the norm's output *without* it (its model card, quoting the Gemma Scope
    paper), i.e. on hook_mlp_in / g. So z = (x / g)·W_enc + b_enc = x·(W_enc / g[:, None]) +
    b_enc: the gain is folded into W_enc's rows here."""
    path = pre_mlp_norm(lm, hook)
    weight = getattr(lm.model.get_submodule(path), "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.shape != (sae.W_enc_DF.shape[0],):
        raise UserError(f"{lm.spec}: {path} has no gain of width {sae.W_enc_DF.shape[0]} to "
                        "fold into the transcoder")
    gain_D = 1.0 + weight.detach().float().cpu()  # Gemma's RMSNorm scales by (1 + weight)
    sae.W_enc_DF.div_(gain_D[:, None].to(sae.W_enc_DF.device))
