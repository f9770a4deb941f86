"""Transcoders: every sparsity architecture between two sites (d_in -> d_out), the skip
connection, the loss against the target, and the save/load round trip with both scales."""

from __future__ import annotations

import json

import pytest
import torch

from monosemantic.config import ConfigError
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.factory import ARCHITECTURES
from monosemantic.sae.io import CFG_FILENAME, load_sae, save_sae

D_IN, D_OUT, F = 6, 5, 32


def _transcoder(arch: str, skip: bool = False):
    torch.manual_seed(0)
    cfg = SAEConfig(architecture=arch, d_in=D_IN, d_out=D_OUT, n_features=F, k=4, skip=skip,
                    apply_b_dec_to_input=False)
    return create_sae(cfg)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_backward_shapes(arch, skip):
    tc = _transcoder(arch, skip)
    x_BD, y_BD = torch.randn(64, D_IN), torch.randn(64, D_OUT)
    tc.init_from_data(x_BD, y_BD)
    out = tc(x_BD, dead_mask_F=torch.ones(F, dtype=torch.bool), target_BD=y_BD)
    assert out.x_hat_BD.shape == (64, D_OUT) and out.f_BF.shape == (64, F)
    assert tc.W_dec.shape == (F, D_OUT) and tc.W_enc.shape == (D_IN, F)
    out.loss.backward()
    assert tc.W_enc.grad is not None and tc.W_dec.grad is not None
    assert (tc.W_skip is not None) == skip
    if skip:
        assert tc.W_skip.shape == (D_OUT, D_IN) and tc.W_skip.grad.abs().sum() > 0
    # The loss compares the output with the target, not with the input.
    assert out.losses["mse"].item() == pytest.approx(
        (y_BD - out.x_hat_BD.detach()).pow(2).sum(-1).mean().item(), rel=1e-5)


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_target_is_required_and_only_for_transcoders(arch):
    tc = _transcoder(arch)
    with pytest.raises(ValueError, match="target_BD"):
        tc(torch.randn(8, D_IN))
    sae = create_sae(SAEConfig(architecture=arch, d_in=D_IN, n_features=F, k=4))
    with pytest.raises(ValueError, match="takes no target"):
        sae(torch.randn(8, D_IN), target_BD=torch.randn(8, D_IN))


def test_skip_adds_a_linear_map_of_the_input():
    tc = _transcoder("topk", skip=True).eval()
    x_BD = torch.randn(16, D_IN)
    base_BD = tc.reconstruct(x_BD)
    with torch.no_grad():
        tc.W_skip.copy_(torch.randn(D_OUT, D_IN))
    torch.testing.assert_close(tc.reconstruct(x_BD), base_BD + x_BD @ tc.W_skip.T)


def test_topk_init_puts_b_dec_at_the_targets_median():
    tc = _transcoder("topk")
    x_BD, y_BD = torch.randn(64, D_IN), torch.randn(64, D_OUT) + 3.0
    tc.init_from_data(x_BD, y_BD)
    assert tc.b_dec.shape == (D_OUT,) and tc.b_dec.mean().item() > 2.0


def test_config_checks():
    with pytest.raises(ConfigError, match="apply_b_dec_to_input"):
        SAEConfig(architecture="topk", d_in=4, d_out=4, n_features=8, k=2)
    with pytest.raises(ConfigError, match="skip is a transcoder"):
        SAEConfig(d_in=4, n_features=8, skip=True)
    assert SAEConfig(d_in=4, d_out=3, n_features=8, apply_b_dec_to_input=False).is_transcoder


@pytest.mark.parametrize("arch,skip,saelens", [
    ("relu", False, "transcoder"), ("relu", True, "skip_transcoder"),
    ("jumprelu", False, "jumprelu_transcoder"), ("batchtopk", True, "jumprelu_skip_transcoder"),
    ("topk", False, "topk_transcoder"), ("matryoshka", False, "jumprelu_transcoder"),
])
def test_save_load_round_trip_folds_both_scales(tmp_path, arch, skip, saelens):
    tc = _transcoder(arch, skip)
    x_BD, y_BD = torch.randn(256, D_IN), torch.randn(256, D_OUT)
    for _ in range(3):  # batchtopk's inference threshold needs training steps
        tc(x_BD, dead_mask_F=None, target_BD=y_BD).loss.backward()
    with torch.no_grad():
        if skip:
            tc.W_skip.copy_(torch.randn(D_OUT, D_IN))
        if not tc.unit_norm_decoder:  # relu's free norms: the fold must handle unequal ones
            tc.W_dec.mul_(torch.rand(F, 1) + 0.5)
    tc.eval()
    s_in, s_out = 2.0, 0.25
    meta = {"model": "m", "hook": "blocks.1.hook_mlp_in", "hook_out": "blocks.1.hook_mlp_out"}
    save_sae(tc, tmp_path / "tc", meta, norm_scale=s_in, target_norm_scale=s_out)
    loaded = load_sae(tmp_path / "tc")
    assert loaded.cfg.d_out == D_OUT and loaded.cfg.skip == skip
    # The saved transcoder reads raw x and predicts raw y: (old output of s_in·x) / s_out.
    raw_x = torch.randn(32, D_IN)
    torch.testing.assert_close(loaded.reconstruct(raw_x), tc.reconstruct(s_in * raw_x) / s_out,
                               rtol=1e-4, atol=1e-5)
    cfg = json.loads((tmp_path / "tc" / CFG_FILENAME).read_text())
    assert cfg["architecture"] == saelens
    assert (cfg["d_out"], cfg["hook_name_out"], cfg["hook_layer_out"]) == (
        D_OUT, "blocks.1.hook_mlp_out", 1)
    assert cfg["apply_b_dec_to_input"] is False


def test_saelens_transcoder_folder_loads(tmp_path):
    """A folder as SAELens writes a skip transcoder (no monosemantic.json) loads as one."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    w = {"W_enc": torch.randn(D_IN, F), "b_enc": torch.randn(F), "W_dec": torch.randn(F, D_OUT),
         "b_dec": torch.randn(D_OUT), "W_skip": torch.randn(D_OUT, D_IN)}
    (tmp_path / "s").mkdir()
    save_file(w, str(tmp_path / "s" / "sae_weights.safetensors"))
    (tmp_path / "s" / CFG_FILENAME).write_text(json.dumps(
        {"architecture": "skip_transcoder", "d_in": D_IN, "d_sae": F, "d_out": D_OUT,
         "apply_b_dec_to_input": True, "normalize_activations": "none"}))
    tc = load_sae(tmp_path / "s")
    x_BD = torch.randn(8, D_IN)
    expected_BD = torch.relu(x_BD @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"] \
        + x_BD @ w["W_skip"].T
    torch.testing.assert_close(tc.reconstruct(x_BD), expected_BD, rtol=1e-4, atol=1e-4)


def test_steering_and_attribution_refuse_a_transcoder():
    from monosemantic.errors import UserError
    from monosemantic.steer.attribution import attribute
    from monosemantic.steer.steering import steering

    tc = _transcoder("topk")
    with pytest.raises(UserError, match="transcoder"):
        with steering(None, tc, "blocks.0.hook_mlp_in", []):
            pass
    with pytest.raises(UserError, match="transcoder"):
        attribute(None, tc, "blocks.0.hook_mlp_in", "a prompt", "x")
