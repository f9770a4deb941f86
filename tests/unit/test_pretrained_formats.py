"""Reading pretrained SAE folders: Gemma Scope (params.npz / params.safetensors) reproduces
Gemma Scope's JumpReLU forward exactly, SAELens folders written by hand name their model and
hook, and malformed folders are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.pretrained import (
    gemma_scope_2_transcoder_config,
    gemma_scope_params,
    gemma_scope_reference,
    gemma_scope_transcoder_params,
    gemma_scope_transcoder_reference,
    write_gemma_scope_npz,
    write_gemma_scope_safetensors,
    write_saelens_standard,
)
from monosemantic.errors import UserError
from monosemantic.pretrained import layout
from monosemantic.pretrained.formats import describe, read_sae
from monosemantic.sae import io

D, F = 8, 24


def _x(n=64, seed=1):
    return np.random.default_rng(seed).normal(0, 1, (n, D)).astype(np.float32)


def _check_against_reference(sae, params):
    x_ND = _x()
    f_ref, x_hat_ref = gemma_scope_reference(params, x_ND)
    with torch.no_grad():
        f_NF = sae.encode(torch.from_numpy(x_ND)).double().numpy()
        x_hat_ND = sae.decode(torch.from_numpy(f_ref).float()).double().numpy()
    assert ((f_NF > 0) == (f_ref > 0)).all()  # the same features fire
    assert 0 < (f_ref > 0).mean() < 1
    np.testing.assert_allclose(f_NF, f_ref, atol=1e-5)
    np.testing.assert_allclose(x_hat_ND, x_hat_ref, atol=1e-4)


def test_layout_names_agree_with_sae_io():
    assert (layout.SAELENS_CFG, layout.SAELENS_WEIGHTS, layout.OUR_METADATA) == \
        (io.CFG_FILENAME, io.WEIGHTS_FILENAME, io.METADATA_FILENAME)


def test_gemma_scope_npz_reproduces_the_reference_forward(tmp_path):
    params = gemma_scope_params(D, F)
    folder = write_gemma_scope_npz(tmp_path / "layer_1" / "width_16k" / "average_l0_5", params)
    info = describe(folder)
    assert (info.layout, info.model, info.hook) == ("gemma-scope", None, None)
    sae = read_sae(info)
    assert sae.cfg.architecture == "jumprelu" and not sae.cfg.apply_b_dec_to_input
    _check_against_reference(sae, params)


def test_gemma_scope_safetensors_with_config_names_model_and_hook(tmp_path):
    params = gemma_scope_params(D, F, seed=3)
    config = {"architecture": "jump_relu", "model_name": "google/gemma-3-270m",
              "hf_hook_point_in": "model.layers.4.output"}
    folder = write_gemma_scope_safetensors(tmp_path / "sae", params, config)
    info = describe(folder)
    assert (info.model, info.hook) == ("google/gemma-3-270m", "blocks.4.hook_resid_post")
    _check_against_reference(read_sae(info), params)


def test_gemma_scope_2_folder_name_implies_the_residual_hook(tmp_path):
    folder = write_gemma_scope_safetensors(
        tmp_path / "resid_post" / "layer_6_width_16k_l0_medium", gemma_scope_params(D, F))
    assert describe(folder).hook == "blocks.6.hook_resid_post"
    other = write_gemma_scope_safetensors(
        tmp_path / "attn_out" / "layer_6_width_16k_l0_medium", gemma_scope_params(D, F))
    assert describe(other).hook is None  # o_proj's input: no name here, --hook needed


def test_a_module_output_in_config_is_that_module(tmp_path):
    config = {"hf_hook_point_in": "model.layers.2.mlp.down_proj.output"}
    folder = write_gemma_scope_safetensors(tmp_path / "s", gemma_scope_params(D, F), config)
    assert describe(folder).hook == "model.layers.2.mlp.down_proj"


@pytest.mark.parametrize("module, hook", [
    ("model.layers.2.post_feedforward_layernorm.output", "blocks.2.hook_mlp_out"),
    ("model.language_model.layers.3.pre_feedforward_layernorm.output", "blocks.3.hook_mlp_in"),
])
def test_the_mlp_norm_outputs_are_our_mlp_hooks(tmp_path, module, hook):
    folder = write_gemma_scope_safetensors(tmp_path / "s", gemma_scope_params(D, F),
                                           {"hf_hook_point_in": module})
    assert describe(folder).hook == hook


def test_a_gemma_scope_2_sae_config_as_published_is_an_sae(tmp_path):
    # Published SAE configs name the same module as input and output, type "sae".
    config = {"hf_hook_point_in": "model.layers.4.output",
              "hf_hook_point_out": "model.layers.4.output", "width": F,
              "model_name": "google/gemma-3-270m-pt", "architecture": "jump_relu", "l0": 20,
              "affine_connection": False, "type": "sae"}
    params = gemma_scope_params(D, F, seed=5)
    info = describe(write_gemma_scope_safetensors(tmp_path / "s", params, config))
    assert (info.transcoder, info.hook, info.hook_out) == (False, "blocks.4.hook_resid_post",
                                                           None)
    sae = read_sae(info)
    assert not sae.cfg.is_transcoder
    _check_against_reference(sae, params)


@pytest.mark.parametrize("problem, match", [
    ("missing", "lacks threshold"),
    ("shape", "b_dec has shape"),
    ("clt", "cross-layer transcoder .*only Gemma Scope SAEs and per-layer transcoders"),
    ("crosscoder", "crosscoder"),
    ("skip", "affine_skip_connection, which only a transcoder has"),
])
def test_malformed_gemma_scope_folders_are_refused(tmp_path, problem, match):
    params = gemma_scope_params(D, F)
    config = None
    if problem == "missing":
        del params["threshold"]
    elif problem == "shape":
        params["b_dec"] = params["b_dec"][:-1]
    elif problem == "skip":
        params["affine_skip_connection"] = np.zeros((D, D), np.float32)
    else:
        config = {"hf_hook_point_in": "model.layers.{all}.pre_feedforward_layernorm.output",
                  "hf_hook_point_out": "model.layers.{all}.post_feedforward_layernorm.output",
                  "architecture": "jump_relu", "type": problem}
    folder = write_gemma_scope_safetensors(tmp_path / "s", params, config)
    with pytest.raises(UserError, match=match):
        read_sae(describe(folder))


def test_saelens_folder_written_by_hand(tmp_path):
    folder, params = write_saelens_standard(tmp_path / "s", D, F, "gpt2-small",
                                            "blocks.3.hook_resid_pre")
    info = describe(folder)
    assert (info.layout, info.model, info.hook) == ("saelens", "gpt2-small",
                                                     "blocks.3.hook_resid_pre")
    sae = read_sae(info)
    x_ND = _x()
    z = (x_ND.astype(np.float64) - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
    with torch.no_grad():
        f_NF = sae.encode(torch.from_numpy(x_ND)).double().numpy()
    np.testing.assert_allclose(f_NF, np.maximum(z, 0), atol=1e-5)


def test_pre_6_saelens_cfg_names_model_and_hook_at_the_top(tmp_path):
    folder, _ = write_saelens_standard(tmp_path / "s", D, F, "m", "h")
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["metadata"]
    cfg.update(model_name="gpt2-small", hook_name="blocks.0.hook_resid_post")
    (folder / "cfg.json").write_text(json.dumps(cfg))
    assert (describe(folder).model, describe(folder).hook) == ("gpt2-small",
                                                               "blocks.0.hook_resid_post")


def test_other_folders_are_not_foreign(tmp_path):
    assert layout.foreign_layout(tmp_path) is None
    with pytest.raises(UserError, match="not an SAE folder"):
        describe(tmp_path)


D_OUT = 6


def _check_transcoder_against_reference(tc, params):
    x_ND = _x()
    f_ref, y_ref = gemma_scope_transcoder_reference(params, x_ND)
    with torch.no_grad():
        f_NF = tc.encode(torch.from_numpy(x_ND)).double().numpy()
        y_hat = tc.reconstruct(torch.from_numpy(x_ND)).double().numpy()
    assert 0 < (f_ref > 0).mean() < 1
    np.testing.assert_allclose(f_NF, f_ref, atol=1e-5)
    np.testing.assert_allclose(y_hat, y_ref, atol=1e-4)


@pytest.mark.parametrize("affine", [False, True])
def test_a_gemma_scope_2_transcoder_reproduces_the_reference_forward(tmp_path, affine):
    params = gemma_scope_transcoder_params(D, D_OUT, F, skip=affine, seed=7)
    config = gemma_scope_2_transcoder_config(5, "google/gemma-3-270m-pt", F, affine)
    folder = write_gemma_scope_safetensors(
        tmp_path / "transcoder_all" / "layer_5_width_16k_l0_big_affine", params, config)
    info = describe(folder)
    assert (info.model, info.transcoder, info.hook, info.hook_out) == (
        "google/gemma-3-270m-pt", True, "blocks.5.hook_mlp_in", "blocks.5.hook_mlp_out")
    tc = read_sae(info)
    assert tc.cfg.is_transcoder and tc.cfg.d_out == D_OUT and tc.cfg.skip == affine
    assert tc.cfg.architecture == "jumprelu" and not tc.cfg.apply_b_dec_to_input
    _check_transcoder_against_reference(tc, params)


def test_a_gemma_scope_2_transcoder_folder_without_config_is_named_by_its_folder(tmp_path):
    folder = write_gemma_scope_safetensors(tmp_path / "transcoder" / "layer_3_width_16k_l0_small",
                                           gemma_scope_transcoder_params(D, D, F))
    info = describe(folder)
    assert (info.transcoder, info.hook, info.hook_out) == (True, "blocks.3.hook_mlp_in",
                                                           "blocks.3.hook_mlp_out")


def test_a_gemma_scope_1_folder_does_not_say_whether_it_is_a_transcoder(tmp_path):
    params = gemma_scope_transcoder_params(D, D, F, seed=2)
    plain = describe(write_gemma_scope_npz(tmp_path / "layer_3" / "width_16k" / "l0_76", params))
    assert (plain.transcoder, plain.hook, plain.hook_out, plain.gemma_scope_1) == (
        None, None, None, True)
    assert not read_sae(plain).cfg.is_transcoder  # read as an SAE unless told otherwise
    tc = read_sae(plain, transcoder=True)
    assert tc.cfg.is_transcoder and tc.cfg.d_out == D and not tc.cfg.skip
    _check_transcoder_against_reference(tc, params)
    # Its hub repository (in the HF cache's folder name) says it is a transcoder.
    cached = tmp_path / "models--google--gemma-scope-2b-pt-transcoders" / "snapshots" / "abc"
    info = describe(write_gemma_scope_npz(cached / "layer_3" / "width_16k" / "l0_76", params))
    assert (info.transcoder, info.hook, info.hook_out) == (True, None, None)


def test_a_wrong_skip_shape_is_refused(tmp_path):
    params = gemma_scope_transcoder_params(D, D_OUT, F, skip=True)
    params["affine_skip_connection"] = params["affine_skip_connection"].T.copy()
    config = gemma_scope_2_transcoder_config(1, "m", F, True)
    folder = write_gemma_scope_safetensors(tmp_path / "s", params, config)
    with pytest.raises(UserError, match=r"affine_skip_connection has shape \(6, 8\), expected "
                       r"\(8, 6\)"):
        read_sae(describe(folder))
