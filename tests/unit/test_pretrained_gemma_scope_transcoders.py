"""Gemma Scope transcoders as run views: a Gemma Scope 2 folder names both its hooks (the pre-
and post-MLP norm outputs, our hook_mlp_in and hook_mlp_out); a Gemma Scope 1 folder names
none (--hook and --hook-out asked for) and reads the pre-MLP norm's output without its gain,
which the view folds into the encoder from the model's weights; widths are checked against
the model's config before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.pretrained import (
    gemma_scope_2_transcoder_config,
    gemma_scope_transcoder_params,
    gemma_scope_transcoder_reference,
    write_gemma_scope_npz,
    write_gemma_scope_safetensors,
)
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.pretrained.view import VIEWS_ENV
from monosemantic.runs import RunDir

D, F = 32, 48  # the tiny models' width
HOOK_IN, HOOK_OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"


@pytest.fixture(autouse=True)
def views(tmp_path, monkeypatch):
    monkeypatch.setenv(VIEWS_ENV, str(tmp_path / "views"))
    return tmp_path / "views"


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    """A tiny random Gemma 3 model whose pre-MLP norm gains are not all 1 (random init leaves
    Gemma's norm weights 0, i.e. gain 1, which would hide a missing fold)."""
    from helpers.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model("gemma3", len(tokenizer), seed=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.model.layers:
            weight = layer.pre_feedforward_layernorm.weight
            weight.copy_(torch.rand(weight.shape, generator=gen) * 2 - 0.5)
    path = tmp_path_factory.mktemp("tiny_gemma")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _empty(views):
    return not views.exists() or not any(views.iterdir())


def _gs2_folder(tmp_path, d_in=D, d_out=D, affine=True, model="google/gemma-3-270m-pt"):
    params = gemma_scope_transcoder_params(d_in, d_out, F, skip=affine, seed=3)
    folder = write_gemma_scope_safetensors(
        tmp_path / "src" / "transcoder_all" / "layer_1_width_16k_l0_big_affine", params,
        gemma_scope_2_transcoder_config(1, model, F, affine))
    return folder, params


def test_a_gemma_scope_2_transcoder_opens_with_both_hooks_from_its_config(tmp_path,
                                                                        tiny_model_dir):
    folder, params = _gs2_folder(tmp_path)
    run = RunDir.open(folder, str(tiny_model_dir))
    assert (run.hook, run.hook_out, run.decoder_hook) == (HOOK_IN, HOOK_OUT, HOOK_OUT)
    assert run.pretrained["layout"] == "gemma-scope" and "input_gain_folded" not in run.pretrained
    tc = run.load_sae()
    assert tc.cfg.is_transcoder and tc.cfg.skip
    x_ND = np.random.default_rng(0).normal(0, 1, (16, D)).astype(np.float32)
    _, y_ref = gemma_scope_transcoder_reference(params, x_ND)
    with torch.no_grad():
        y_hat = tc.reconstruct(torch.from_numpy(x_ND)).double().numpy()
    np.testing.assert_allclose(y_hat, y_ref, atol=1e-4)  # the view keeps the published codes
    assert run.load_model("cpu").d_model == D  # both sites checked when the model loads


@pytest.mark.parametrize("d_in, d_out, hook_out, match", [
    (24, D, None, "width 32 at blocks.1.hook_mlp_in, the SAE reads width 24"),
    (D, 24, None, "width 32 at blocks.1.hook_mlp_out, the transcoder writes width 24"),
    (D, D, "blocks.1.mlp.hook_post", "width 128 at blocks.1.mlp.hook_post, the transcoder "
     "writes width 32"),
])
def test_wrong_widths_are_refused_before_anything_is_written(tmp_path, tiny_model_dir, views,
                                                             d_in, d_out, hook_out, match):
    folder, _ = _gs2_folder(tmp_path, d_in, d_out)
    with pytest.raises(UserError, match=match):
        RunDir.open(folder, str(tiny_model_dir), hook_out=hook_out)
    assert _empty(views)


def test_a_gemma_scope_1_transcoder_needs_both_hooks(tmp_path, tiny_gemma_dir, views):
    cached = tmp_path / "models--google--gemma-scope-2b-pt-transcoders" / "snapshots" / "abc"
    folder = write_gemma_scope_npz(cached / "layer_1" / "width_16k" / "average_l0_76",
                                   gemma_scope_transcoder_params(D, D, F))
    with pytest.raises(UserError, match="reads and writes .*--hook blocks.6.hook_mlp_in "
                       "--hook-out blocks.6.hook_mlp_out"):
        RunDir.open(folder, str(tiny_gemma_dir))
    with pytest.raises(UserError, match="which hook it writes .*Gemma Scope 1.*--hook-out"):
        RunDir.open(folder, str(tiny_gemma_dir), HOOK_IN)
    assert _empty(views)
    out = tmp_path / "out"
    assert main(["import-sae", str(folder), str(out), "--model", str(tiny_gemma_dir),
                 "--hook", HOOK_IN]) == 2
    assert not out.exists()
    assert main(["import-sae", str(folder), str(out), "--model", str(tiny_gemma_dir),
                 "--hook", HOOK_IN, "--hook-out", HOOK_OUT]) == 0
    run = RunDir.open(out)
    assert (run.hook, run.hook_out, run.pretrained["input_gain_folded"]) == (HOOK_IN, HOOK_OUT,
                                                                             True)


def test_a_gemma_scope_1_transcoder_reads_hook_mlp_in_without_the_norm_gain(tmp_path,
                                                                           tiny_gemma_dir):
    from monosemantic.models import capture, load_model

    params = gemma_scope_transcoder_params(D, D, F, seed=4)
    folder = write_gemma_scope_npz(tmp_path / "layer_1" / "width_16k" / "average_l0_76", params)
    run = RunDir.open(folder, str(tiny_gemma_dir), HOOK_IN, HOOK_OUT)
    assert (run.hook, run.hook_out, run.pretrained["input_gain_folded"]) == (HOOK_IN, HOOK_OUT,
                                                                             True)
    lm = load_model(str(tiny_gemma_dir))
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46]])
    x_SD = capture(lm, ids, [HOOK_IN])[HOOK_IN][0]
    gain_D = 1 + lm.model.model.layers[1].pre_feedforward_layernorm.weight.detach()
    assert not torch.allclose(gain_D, torch.ones_like(gain_D))
    # Gemma Scope 1's input: the pre-MLP norm's output with the gain folded out.
    f_ref, y_ref = gemma_scope_transcoder_reference(params, (x_SD / gain_D).double().numpy())
    tc = run.load_sae()
    with torch.no_grad():
        f_SF = tc.encode(x_SD).double().numpy()
        y_hat = tc.reconstruct(x_SD).double().numpy()
    assert (f_ref > 0).any()
    np.testing.assert_allclose(f_SF, f_ref, atol=1e-4)
    np.testing.assert_allclose(y_hat, y_ref, atol=1e-3)
    # The same folder read as an SAE (no --hook-out) is another view, with nothing folded.
    sae = RunDir.open(folder, str(tiny_gemma_dir), HOOK_IN)
    assert sae != run and sae.hook_out is None and not sae.load_sae().cfg.is_transcoder


def test_the_gain_fold_is_refused_where_there_is_no_gemma_pre_mlp_norm(tmp_path,
                                                                       tiny_model_dir, views):
    folder = write_gemma_scope_npz(tmp_path / "gs1", gemma_scope_transcoder_params(D, D, F))
    with pytest.raises(UserError, match="Gemma 2's pre-MLP norm output without its gain.*llama"):
        RunDir.open(folder, str(tiny_model_dir), HOOK_IN, HOOK_OUT)
    assert _empty(views)
