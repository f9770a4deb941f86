"""Save and load cross-layer transcoders (`sae/clt.py`): our own folder format (docs/clt.md).

    cfg.json                 what the CLT is: kind "cross_layer_transcoder", architecture,
                             layers, d_in, d_out, n_features (per layer), hook name templates,
                             model, the per-layer SAEConfig
    clt_weights.safetensors  per layer L of the CLT (model block index):
                             W_enc.L [d_in, F], b_enc.L [F], b_dec.L [d_out] (L's prediction),
                             W_dec.L [F, n_L, d_out] (decoders to L and the n_L − 1 later CLT
                             layers, in order), and the architecture's own inference tensors
                             (threshold.L [F] for jumprelu and batchtopk)
    monosemantic.json        format_version, kind, sae_config, layers, the folded scales and
                             the trainer's extra_metadata (model, hook, stores, holdout rows)

The saved CLT reads raw MLP inputs and predicts raw MLP outputs: each input site's scale s_L
(E‖s·x‖² = d) is folded into W_enc.L, each target site's t_L' into the decoders to it and its
bias. Decoder norms are not folded (codes are the trained ones): with a different t per target
layer the concatenated rows no longer share one norm, and rescaling topk's pre-activations by
unequal factors would change which k it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from monosemantic.config import from_dict, to_dict
from monosemantic.errors import UserError
from monosemantic.sae.clt import CrossLayerTranscoder
from monosemantic.sae.config import SAEConfig
from monosemantic.sae.io import _check_replaceable, read_metadata, write_staged_folder

CLT_KIND = "cross_layer_transcoder"
CLT_WEIGHTS_FILENAME = "clt_weights.safetensors"
CLT_FORMAT_VERSION = 1
HOOK_IN_TEMPLATE, HOOK_OUT_TEMPLATE = "blocks.{layer}.hook_mlp_in", "blocks.{layer}.hook_mlp_out"


def is_clt_folder(path: str | Path) -> bool:
    """Whether `path` holds a CLT saved by `save_clt`."""
    return read_metadata(path).get("kind") == CLT_KIND


@torch.no_grad()
def clt_tensors(clt: CrossLayerTranscoder, norm_scales: Sequence[float],
                target_norm_scales: Sequence[float]) -> dict[str, torch.Tensor]:
    """The saved tensors of `clt`, input scales s_L and target scales t_L' folded in."""
    n, d_out, n_feat = len(clt.layers), clt.d_out, clt.n_features
    for scales in (norm_scales, target_norm_scales):
        if len(scales) != n or not all(s > 0 for s in scales):
            raise ValueError(f"need {n} positive scales per site, got {list(scales)}")
    t_N = torch.tensor(list(target_norm_scales), dtype=torch.float32)
    out: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(clt.layers):
        state = {k: v.detach().to("cpu", torch.float32).clone()
                 for k, v in clt.encoder(layer).inference_state().items()}
        state.pop("b_dec")  # unused: the CLT's per-target bias is b_dec.L
        out[f"W_enc.{layer}"] = state.pop("W_enc") * float(norm_scales[i])
        out[f"W_dec.{layer}"] = (state.pop("W_dec").view(n_feat, n - i, d_out)
                                 / t_N[i:, None]).contiguous()
        out[f"b_dec.{layer}"] = clt.bias(layer).detach().to("cpu", torch.float32) / t_N[i]
        out.update({f"{name}.{layer}": value for name, value in state.items()})
    return {k: v.contiguous() for k, v in out.items()}


def save_clt(clt: CrossLayerTranscoder, out_dir: str | Path,
             extra_metadata: dict[str, Any] | None = None,
             norm_scales: Sequence[float] | None = None,
             target_norm_scales: Sequence[float] | None = None) -> Path:
    """Write `clt` (scales folded; default 1) as the folder `out_dir`, atomically."""
    out_dir, n = Path(out_dir), len(clt.layers)
    norm_scales = [1.0] * n if norm_scales is None else [float(s) for s in norm_scales]
    target_norm_scales = (norm_scales if target_norm_scales is None
                          else [float(s) for s in target_norm_scales])
    tensors = clt_tensors(clt, norm_scales, target_norm_scales)
    extra = dict(extra_metadata or {})
    cfg = {"kind": CLT_KIND, "format_version": CLT_FORMAT_VERSION,
           "architecture": clt.cfg.architecture, "layers": list(clt.layers),
           "d_in": clt.d_in, "d_out": clt.d_out, "n_features": clt.n_features,
           "hook_in": HOOK_IN_TEMPLATE, "hook_out": HOOK_OUT_TEMPLATE,
           "model": extra.get("model"), "sae_config": to_dict(clt.cfg)}
    ours = {"format_version": CLT_FORMAT_VERSION, "kind": CLT_KIND,
            "architecture": clt.cfg.architecture, "sae_config": to_dict(clt.cfg),
            "layers": list(clt.layers), "norm_scales_folded": norm_scales,
            "target_norm_scales_folded": target_norm_scales, "decoder_norms_folded": False,
            "extra_metadata": extra}
    _check_replaceable(out_dir)
    write_staged_folder(out_dir, CLT_WEIGHTS_FILENAME, tensors,
                        {"cfg.json": cfg, "monosemantic.json": ours})
    return out_dir


def load_clt(path: str | Path, device: str | torch.device = "cpu") -> CrossLayerTranscoder:
    """A CLT folder written by `save_clt`, in eval mode (reads raw activations)."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("kind") != CLT_KIND or not (path / CLT_WEIGHTS_FILENAME).is_file():
        raise UserError(f"{path} is not a saved cross-layer transcoder: expected "
                        f"monosemantic.json of kind {CLT_KIND!r} and {CLT_WEIGHTS_FILENAME}")
    if int(meta.get("format_version", 0)) > CLT_FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer monosemantic (CLT format "
                        f"{meta['format_version']}): upgrade monosemantic to read it")
    clt = CrossLayerTranscoder(from_dict(SAEConfig, meta["sae_config"]), meta["layers"])
    weights = {k: v.float() for k, v in load_file(str(path / CLT_WEIGHTS_FILENAME)).items()}
    with torch.no_grad():
        for layer in clt.layers:
            enc = clt.encoder(layer)
            names = set(enc.inference_state()) - {"W_enc", "b_enc", "W_dec", "b_dec"}
            state = {name: _take(weights, f"{name}.{layer}", path)
                     for name in ("W_enc", "b_enc", *sorted(names))}
            state["W_dec"] = _take(weights, f"W_dec.{layer}", path).reshape(clt.n_features, -1)
            state["b_dec"] = torch.zeros_like(enc.b_dec)
            enc.load_inference_state(state)
            clt.bias(layer).copy_(_take(weights, f"b_dec.{layer}", path))
    return clt.to(device).eval()


def _take(weights: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key not in weights:
        raise UserError(f"{path / CLT_WEIGHTS_FILENAME} lacks the tensor {key!r}")
    return weights[key]
