"""Pretrained SAE folders written by hand, as other tools lay them out (not by `save_sae`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def gemma_scope_params(d: int, f: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random JumpReLU parameters with Gemma Scope's names and shapes; decoder rows of varied
    norm and a few negative thresholds (so a reference that folds nothing can tell)."""
    rng = np.random.default_rng(seed)
    threshold = rng.uniform(0.0, 0.5, f).astype(np.float32)
    threshold[:2] = -0.1
    return {"W_enc": rng.normal(0, 1 / np.sqrt(d), (d, f)).astype(np.float32),
            "W_dec": (rng.normal(0, 1, (f, d)) * rng.uniform(0.2, 3, (f, 1))).astype(np.float32),
            "b_enc": rng.normal(0, 0.1, f).astype(np.float32),
            "b_dec": rng.normal(0, 0.1, d).astype(np.float32),
            "threshold": threshold}


def gemma_scope_reference(params: dict[str, np.ndarray], x_ND: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, reconstruction) as Gemma Scope defines them, in float64: z = x W_enc + b_enc,
    f = 1[z > θ]·ReLU(z), x̂ = f W_dec + b_dec."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    z_NF = x_ND.astype(np.float64) @ p["W_enc"] + p["b_enc"]
    f_NF = (z_NF > p["threshold"]) * np.maximum(z_NF, 0)
    return f_NF, f_NF @ p["W_dec"] + p["b_dec"]


def write_gemma_scope_npz(folder: Path, params: dict[str, np.ndarray]) -> Path:
    """Gemma Scope 1's layout: params.npz only (names neither model nor hook)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **params)
    return folder


def write_gemma_scope_safetensors(folder: Path, params: dict[str, np.ndarray],
                                  config: dict | None = None) -> Path:
    """Gemma Scope 2's layout: params.safetensors with lower-case names, maybe config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k.lower(): v for k, v in params.items()}, str(folder / "params.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_saelens_standard(folder: Path, d: int, f: int, model: str, hook: str,
                           seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """A SAELens (>= 6) `standard` SAE folder: cfg.json with metadata + sae_weights."""
    rng = np.random.default_rng(seed)
    params = {"W_enc": rng.normal(0, 1 / np.sqrt(d), (d, f)).astype(np.float32),
              "W_dec": rng.normal(0, 1, (f, d)).astype(np.float32),
              "b_enc": rng.normal(0, 0.1, f).astype(np.float32),
              "b_dec": rng.normal(0, 0.1, d).astype(np.float32)}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(params, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": d, "d_sae": f, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"model_name": model, "hook_name": hook, "sae_lens_version": "6.5.0",
                        "context_size": 128, "prepend_bos": True}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder, params


def write_saelens_transcoder(folder: Path, d_in: int, d_out: int, f: int, model: str,
                             hook: str, hook_out: str | None,
                             seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """A SAELens (>= 6) `skip_transcoder` folder as its TranscoderConfig writes it: `d_out`
    and `hook_name_out` at the top level (left out when `hook_out` is None), W_dec [F, d_out],
    b_dec [d_out], W_skip [d_out, d_in]."""
    rng = np.random.default_rng(seed)
    params = {"W_enc": rng.normal(0, 1 / np.sqrt(d_in), (d_in, f)).astype(np.float32),
              "W_dec": rng.normal(0, 1, (f, d_out)).astype(np.float32),
              "b_enc": rng.normal(0, 0.1, f).astype(np.float32),
              "b_dec": rng.normal(0, 0.1, d_out).astype(np.float32),
              "W_skip": rng.normal(0, 0.1, (d_out, d_in)).astype(np.float32)}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(params, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "skip_transcoder", "d_in": d_in, "d_sae": f, "d_out": d_out,
           "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
           "normalize_activations": "none", "reshape_activations": "none",
           "hook_layer_out": None, "hook_head_index_out": None,
           "metadata": {"model_name": model, "hook_name": hook, "sae_lens_version": "6.5.0",
                        "context_size": 128, "prepend_bos": True}}
    if hook_out is not None:
        cfg["hook_name_out"] = hook_out
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder, params


def gemma_scope_transcoder_params(d_in: int, d_out: int, f: int, skip: bool = False,
                                  seed: int = 0) -> dict[str, np.ndarray]:
    """A Gemma Scope transcoder's tensors by their Gemma Scope 1 names: W_enc [d_in, F],
    W_dec [F, d_out], b_dec [d_out], and with `skip` Gemma Scope 2's
    affine_skip_connection [d_in, d_out] (applied as x @ it)."""
    params = gemma_scope_params(d_in, f, seed)
    rng = np.random.default_rng(seed + 1)
    params["W_dec"] = (rng.normal(0, 1, (f, d_out)) * rng.uniform(0.2, 3, (f, 1))
                       ).astype(np.float32)
    params["b_dec"] = rng.normal(0, 0.1, d_out).astype(np.float32)
    if skip:
        params["affine_skip_connection"] = rng.normal(0, 0.2, (d_in, d_out)).astype(np.float32)
    return params


def gemma_scope_transcoder_reference(params: dict[str, np.ndarray], x_ND: np.ndarray
                                     ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, prediction) of a Gemma Scope transcoder in float64: f = 1[z > θ]·ReLU(z) with
    z = x W_enc + b_enc; ŷ = f W_dec + b_dec (+ x affine_skip_connection)."""
    f_NF, y_hat = gemma_scope_reference(
        {k: v for k, v in params.items() if k != "affine_skip_connection"}, x_ND)
    if "affine_skip_connection" in params:
        y_hat = y_hat + x_ND.astype(np.float64) @ params["affine_skip_connection"].astype(
            np.float64)
    return f_NF, y_hat


def gemma_scope_2_transcoder_config(layer: int, model: str, width: int, affine: bool) -> dict:
    """config.json of a Gemma Scope 2 transcoder folder (transcoder[_all]/layer_L_...), with
    the keys and values published configs hold (as quoted by third parties; none read here)."""
    return {"hf_hook_point_in": f"model.layers.{layer}.pre_feedforward_layernorm.output",
            "hf_hook_point_out": f"model.layers.{layer}.post_feedforward_layernorm.output",
            "width": width, "model_name": model, "architecture": "jump_relu", "l0": 50,
            "affine_connection": affine, "type": "transcoder"}
