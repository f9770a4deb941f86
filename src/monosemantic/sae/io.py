"""Save and load SAEs in the SAELens folder layout.

A saved folder holds
- `cfg.json`: the SAELens (>= 6) config: `architecture` ("standard" for relu, "topk",
  "jumprelu"; batchtopk is written as "jumprelu" with its threshold, as SAELens itself does),
  `d_in`, `d_sae`, `dtype`, `device`, `apply_b_dec_to_input`, `normalize_activations`,
  `reshape_activations`, `k` and `rescale_acts_by_decoder_norm` for topk, and `metadata`
  (`model_name`, `hook_name`, ...);
- `sae_weights.safetensors`: `W_enc [d, F]`, `b_enc [F]`, `W_dec [F, d]`, `b_dec [d]`, plus
  `threshold [F]` for jumprelu/batchtopk (and `W_skip [d_out, d_in]` for skip transcoders);
- `monosemantic.json`: our `SAEConfig`, the folded normalisation scale and the caller's
  `extra_metadata` (model, hook, store, holdout rows, training summary).

Transcoders (docs/transcoders.md) add `d_out`, `hook_name_out`, `hook_layer_out`,
`hook_head_index_out` to cfg.json, as SAELens' transcoder classes read them (`saelens_architecture`
names the class); `W_dec [F, d_out]`, `b_dec [d_out]`.

At save the input-normalisation scale s and the decoder row norms are folded into the weights:
the saved SAE reads *raw* activations, has unit-norm decoder rows, reports activations
f_i·‖W_dec[i]‖/s, and reconstructs raw x as (old reconstruction of s·x)/s.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from monosemantic.config import from_dict, to_dict
from monosemantic.errors import UserError
from monosemantic.fsutil import fsync_path
from monosemantic.sae.base import SAE
from monosemantic.sae.config import SAEConfig
from monosemantic.sae.factory import create_sae, sae_class

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
METADATA_FILENAME = "monosemantic.json"
FORMAT_VERSION = 1
# SAELens reads `metadata.sae_lens_version` to pick its config parser; >= 6.0.0 selects the
# current format, which is the one written here.
SAELENS_CFG_FORMAT = "6.0.0"
_FROM_SAELENS_ARCH = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu",
                      "transcoder": "relu", "skip_transcoder": "relu",
                      "jumprelu_transcoder": "jumprelu", "jumprelu_skip_transcoder": "jumprelu"}
# extra_metadata keys (first present wins) copied into SAELens' metadata.
_SAELENS_METADATA_SOURCES = {
    "model_name": ("model_name", "model", "model_spec"),
    "hook_name": ("hook_name", "hook"),
    "context_size": ("context_size", "ctx_len"),
    "dataset_path": ("dataset_path", "corpus", "store"),
}


@torch.no_grad()
def fold_for_inference(sae: SAE, norm_scale: float = 1.0,
                       target_norm_scale: float | None = None,
                       decoder_norms: bool = True) -> SAE:
    """A copy of `sae` that reads raw activations and (with `decoder_norms`) has unit-norm
    decoder rows.

    `norm_scale` is the s the trainer multiplied inputs by (E‖s·x‖² = d); `target_norm_scale`
    the t it multiplied a transcoder's targets by (None: t = s, an SAE's target is its input).
    """
    out_scale = norm_scale if target_norm_scale is None else target_norm_scale
    for scale in (norm_scale, out_scale):
        if not (scale > 0 and math.isfinite(scale)):
            raise UserError(f"norm_scale must be a finite number > 0, got {scale}")
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in
             sae.inference_state().items()}
    # (a) inputs: z = (s·x − a·b_dec)·W_enc + b_enc = (x − a·b_dec/s)·(s·W_enc) + b_enc
    #     (a = 0 for transcoders); outputs: (f·W_dec + b_dec + s·x·W_skipᵀ)/t.
    state["W_enc"] *= norm_scale
    state["W_dec"] /= out_scale
    state["b_dec"] /= out_scale
    if "W_skip" in state:
        state["W_skip"] *= norm_scale / out_scale
    if not decoder_norms:
        folded = create_sae(copy.deepcopy(sae.cfg))
        folded.load_inference_state(state)
        return folded.eval()
    # (b) decoder norms n: f_i·W_dec[i] = (n_i·f_i)·(W_dec[i]/n_i); scaling z_i by n_i > 0
    #     scales ReLU / TopK (equal n) / JumpReLU (with θ_i·n_i) codes by n_i.
    norms_F = state["W_dec"].norm(dim=1)
    norms_F = torch.where(norms_F > 0, norms_F, torch.ones_like(norms_F))
    state["W_dec"] /= norms_F[:, None]
    state["W_enc"] *= norms_F[None, :]
    state["b_enc"] *= norms_F
    if "threshold" in state:
        state["threshold"] *= norms_F
    folded = create_sae(copy.deepcopy(sae.cfg))
    folded.load_inference_state(state)
    return folded.eval()


def save_sae(sae: SAE, out_dir: str | Path, extra_metadata: dict[str, Any] | None = None,
             norm_scale: float = 1.0, target_norm_scale: float | None = None,
             fold_decoder_norms: bool = True) -> Path:
    """Fold `norm_scale` (and a transcoder's `target_norm_scale`) and decoder norms in,
    write the SAELens-layout folder atomically.

    `fold_decoder_norms=False` keeps the codes as they are (a pretrained SAE imported as a run
    keeps its published activation values)."""
    out_dir = Path(out_dir)
    threshold_count = getattr(sae, "threshold_count", None)  # batchtopk's buffer
    if threshold_count is not None and int(threshold_count) == 0:
        warnings.warn("saving a batchtopk SAE whose inference threshold was never estimated "
                      "(no training step): its saved threshold is 0", stacklevel=2)
    folded = fold_for_inference(sae, norm_scale, target_norm_scale,
                                decoder_norms=fold_decoder_norms)
    extra = dict(extra_metadata or {})
    tensors = {k: v.contiguous() for k, v in folded.inference_state().items()}
    ours = {"format_version": FORMAT_VERSION, "architecture": sae.cfg.architecture,
            "sae_config": to_dict(sae.cfg), "norm_scale_folded": float(norm_scale),
            "decoder_norms_folded": fold_decoder_norms, "extra_metadata": extra}
    if sae.cfg.is_transcoder:
        ours["target_norm_scale_folded"] = float(
            norm_scale if target_norm_scale is None else target_norm_scale)
    _check_replaceable(out_dir)
    write_staged_folder(out_dir, WEIGHTS_FILENAME, tensors,
                        {CFG_FILENAME: saelens_cfg(sae.cfg, extra), METADATA_FILENAME: ours})
    return out_dir


def write_staged_folder(out_dir: Path, weights_name: str, tensors: dict[str, torch.Tensor],
                        jsons: dict[str, dict[str, Any]]) -> None:
    """Write a weights file and JSON files as the folder `out_dir`, crash-safely: staged in a
    temp folder beside it, fsynced, then swapped in (replacing an earlier one)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        save_file(tensors, str(tmp_dir / weights_name))
        for name, data in jsons.items():
            _write_json(tmp_dir / name, data)
        for name in (weights_name, *jsons):
            fsync_path(tmp_dir / name)
        _swap_in(tmp_dir, out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)


def saelens_cfg(cfg: SAEConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """The `cfg.json` SAELens reads for an SAE saved by `save_sae`."""
    metadata: dict[str, Any] = {"sae_lens_version": SAELENS_CFG_FORMAT,
                                "sae_lens_training_version": None, "hook_head_index": None,
                                "prepend_bos": True, "neuronpedia_id": None,
                                "written_by": "monosemantic"}
    for key, sources in _SAELENS_METADATA_SOURCES.items():
        value = next((extra[s] for s in sources if extra.get(s) is not None), None)
        metadata[key] = str(value) if isinstance(value, Path) else value
    cls = sae_class(cfg.architecture)
    out: dict[str, Any] = {
        "architecture": saelens_architecture(cfg), "d_in": cfg.d_in,
        "d_sae": cfg.n_features, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": bool(cfg.apply_b_dec_to_input), "normalize_activations": "none",
        "reshape_activations": "none", "metadata": metadata,
        # Top-level copies for readers of the pre-6 format.
        "model_name": metadata["model_name"], "hook_name": metadata["hook_name"],
    }
    out.update(cls.saelens_fields(cfg))
    if cfg.is_transcoder:
        hook_out = extra.get("hook_out")
        out.update({"d_out": cfg.d_out, "hook_name_out": hook_out,
                    "hook_layer_out": _hook_layer(hook_out), "hook_head_index_out": None})
    return out


def saelens_architecture(cfg: SAEConfig) -> str:
    """SAELens' `architecture` for `cfg`. Transcoders: SAELens (>= 6) has `transcoder` (ReLU),
    `skip_transcoder`, `jumprelu_transcoder` and `jumprelu_skip_transcoder`; a topk
    transcoder has no SAELens class and is written as `topk_transcoder` / `topk_skip_transcoder`
    (our loader reads them, SAELens refuses them)."""
    base = sae_class(cfg.architecture).saelens_architecture
    if not cfg.is_transcoder:
        return base
    stem = "" if base == "standard" else f"{base}_"
    return f"{stem}{'skip_' if cfg.skip else ''}transcoder"


def _hook_layer(hook: Any) -> int | None:
    """The block index of a canonical hook name (`blocks.6.hook_mlp_out` -> 6), else None."""
    parts = str(hook).split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() \
        else None


def read_metadata(sae_dir: str | Path) -> dict[str, Any]:
    """`monosemantic.json` of a saved SAE ({} for a folder written by another tool)."""
    path = Path(sae_dir) / METADATA_FILENAME
    return json.loads(path.read_text()) if path.is_file() else {}


def load_sae(sae_dir: str | Path, device: str | torch.device = "cpu") -> SAE:
    """Load a folder written by `save_sae`, or a SAELens folder (standard/topk/jumprelu)."""
    sae_dir = Path(sae_dir)
    cfg_path, weights_path = sae_dir / CFG_FILENAME, sae_dir / WEIGHTS_FILENAME
    if (sae_dir / "crosscoder.json").is_file():
        raise UserError(f"{sae_dir} holds a crosscoder: load it with "
                        "`monosemantic.sae.crosscoder.load_crosscoder` (docs/crosscoders.md)")
    if read_metadata(sae_dir).get("kind") == "cross_layer_transcoder":
        raise UserError(f"{sae_dir} is a cross-layer transcoder, not an SAE: load it with "
                        "monosemantic.sae.clt_io.load_clt (RunDir.load_clt); the commands "
                        "that take one SAE do not read CLTs yet (docs/clt.md)")
    if not cfg_path.is_file() or not weights_path.is_file():
        raise UserError(f"{sae_dir} is not a saved SAE: expected {CFG_FILENAME} and "
                        f"{WEIGHTS_FILENAME} in it (a training run keeps its SAE in RUN/sae/)")
    weights = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    ours = read_metadata(sae_dir)
    if ours:
        if ours.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(f"{sae_dir} was written by a newer monosemantic (format "
                            f"{ours['format_version']}): upgrade monosemantic to read it")
        cfg = from_dict(SAEConfig, ours["sae_config"])
    else:
        cfg, weights = _from_saelens(json.loads(cfg_path.read_text()), weights, sae_dir)
    sae = create_sae(cfg)
    missing = set(sae.inference_state()) - set(weights)
    if missing:
        raise UserError(f"{weights_path} lacks tensors {sorted(missing)}")
    sae.load_inference_state(weights)
    return sae.to(device).eval()


def _from_saelens(raw: dict[str, Any], weights: dict[str, torch.Tensor],
                  where: Path) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    """SAEConfig (and weights in our conventions) for a folder written by SAELens."""
    arch_raw = raw.get("architecture") or (
        "topk" if raw.get("activation_fn", raw.get("activation_fn_str")) == "topk" else "standard")
    if arch_raw not in _FROM_SAELENS_ARCH:
        raise UserError(f"{where}: SAELens architecture {arch_raw!r} is not supported; "
                        f"supported: {', '.join(_FROM_SAELENS_ARCH)}")
    norm = raw.get("normalize_activations") or "none"
    # SAELens applies no input transform at inference for these two (the scale is folded).
    if norm not in ("none", "expected_average_only_in"):
        raise UserError(f"{where}: normalize_activations={norm!r} is applied at run time by "
                        "SAELens and not supported here; fold it into the weights first")
    if (raw.get("reshape_activations") or "none") != "none":
        raise UserError(f"{where}: reshape_activations={raw['reshape_activations']!r} "
                        "(attention hook_z SAEs) is not supported")
    scaling = weights.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise UserError(f"{where}: a finetuning scaling_factor is not supported")
    if "log_threshold" in weights:
        weights["threshold"] = torch.exp(weights.pop("log_threshold"))
    arch = _FROM_SAELENS_ARCH[arch_raw]
    k = _saelens_k(raw, where) if sae_class(arch).uses_k else None
    if arch_raw == "topk" and raw.get("rescale_acts_by_decoder_norm"):
        # TopK on z·‖W_dec‖ and decode with f/‖W_dec‖ is the same SAE with norms folded in.
        norms_F = weights["W_dec"].norm(dim=1).clamp_min(1e-8)
        weights["W_dec"] = weights["W_dec"] / norms_F[:, None]
        weights["W_enc"] = weights["W_enc"] * norms_F[None, :]
        weights["b_enc"] = weights["b_enc"] * norms_F
    apply_b_dec = raw.get("apply_b_dec_to_input")
    options: dict[str, Any] = {} if k is None else {"k": k}
    if arch_raw.endswith("transcoder"):
        # SAELens' transcoders never subtract b_dec (it has the output's width).
        options.update(d_out=int(raw["d_out"]), skip="skip" in arch_raw)
        apply_b_dec = False
    cfg = SAEConfig(architecture=arch, d_in=int(raw["d_in"]), n_features=int(raw["d_sae"]),
                    apply_b_dec_to_input=True if apply_b_dec is None else bool(apply_b_dec),
                    **options)
    return cfg, weights


def _saelens_k(raw: dict[str, Any], where: Path) -> int:
    """TopK's k from a SAELens cfg.json: top-level `k` (SAELens >= 6) or
    `activation_fn_kwargs.k` (earlier versions); a folder with neither is refused rather than
    loaded with a guessed k."""
    k = raw.get("k")
    if k is None:
        k = (raw.get("activation_fn_kwargs") or {}).get("k")
    if k is None:
        raise UserError(f"{where}: its {CFG_FILENAME} describes a topk SAE but gives no k "
                        "(neither a top-level `k` nor `activation_fn_kwargs.k`): add the k the "
                        "SAE was trained with to that file")
    return int(k)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier saved SAE."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder: choose another output path")
    names = {p.name for p in out_dir.iterdir()}
    if names and CFG_FILENAME not in names:
        raise UserError(f"{out_dir} is a non-empty folder that holds no saved SAE: choose an "
                        "empty or new folder (save_sae replaces only an earlier SAE)")


def _swap_in(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished temp folder to `out_dir`, replacing an earlier SAE there."""
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, old)
        os.rename(tmp_dir, out_dir)
        shutil.rmtree(old)
    else:
        os.rename(tmp_dir, out_dir)
    fsync_path(out_dir.parent)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

