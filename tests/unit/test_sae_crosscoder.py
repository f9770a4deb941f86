"""Crosscoders as the architectures' dictionaries on concatenated sites: shapes, the per-site
decoder-norm penalty, config checks and the folder round trip."""

from __future__ import annotations

import pytest
import torch

from monosemantic.config import ConfigError
from monosemantic.errors import UserError
from monosemantic.sae import ARCHITECTURES, SAEConfig, create_sae, load_sae
from monosemantic.sae.crosscoder import (
    CrosscoderSAE,
    Site,
    load_crosscoder,
    save_crosscoder,
)

WIDTHS = (6, 10)


def _xc(arch: str, n_features: int = 24, **kw):
    torch.manual_seed(0)
    return create_sae(SAEConfig(architecture=arch, d_in=sum(WIDTHS), n_features=n_features,
                                k=4, site_widths=WIDTHS, **kw))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_becomes_a_crosscoder(arch):
    xc = _xc(arch)
    assert isinstance(xc, CrosscoderSAE) and type(xc).__mro__[2].__name__ != "SAE"
    x_BD = torch.randn(32, sum(WIDTHS))
    out = xc(x_BD)
    assert out.x_hat_BD.shape == (32, 16) and xc.encode(x_BD).shape == (32, 24)
    assert [p.shape[1] for p in xc.split_sites(x_BD)] == list(WIDTHS)
    # The per-site MSEs add up to the architecture's MSE (= Σ_s MSE_s).
    total = float(out.losses["mse_site0"] + out.losses["mse_site1"])
    assert total == pytest.approx(float(out.losses["mse"].detach()), rel=1e-5)
    out.loss.backward()
    assert xc.W_dec.grad is not None


def test_relu_penalty_is_the_sum_of_per_site_decoder_norms():
    xc = _xc("relu", n_features=3, l1_coefficient=2.0)
    with torch.no_grad():
        xc.W_dec.zero_()
        xc.W_dec[0, :6] = 3.0 / 6 ** 0.5   # ‖d_A‖ = 3, ‖d_B‖ = 0
        xc.W_dec[1, :6] = 1.0 / 6 ** 0.5   # ‖d_A‖ = 1
        xc.W_dec[1, 6:] = 2.0 / 10 ** 0.5  # ‖d_B‖ = 2  (concatenated norm √5, not 3)
        xc.W_enc.zero_()
        xc.b_enc.copy_(torch.tensor([1.0, 2.0, 0.5]))  # constant codes f = b_enc
    x_BD = torch.zeros(4, 16)
    for sparse in (False, True):
        out = xc(x_BD, sparse=sparse, l1_scale=0.5)
        # λ·l1_scale·Σ_i f_i Σ_s ‖d_s[i]‖ = 2·0.5·(1·3 + 2·3 + 0.5·0), mean over rows
        assert float(out.losses["l1"].detach()) == pytest.approx(9.0)
    plain = create_sae(SAEConfig(architecture="relu", d_in=16, n_features=3, l1_coefficient=2.0))
    plain.load_state_dict(xc.state_dict())
    assert float(plain(x_BD, l1_scale=0.5).losses["l1"]) == pytest.approx(1 * 3 + 2 * 5 ** 0.5)


def test_config_checks():
    with pytest.raises(ConfigError, match="sum of its site"):
        SAEConfig(architecture="topk", d_in=15, n_features=8, k=2, site_widths=WIDTHS)
    with pytest.raises(ConfigError, match="at least two sites"):
        SAEConfig(architecture="topk", d_in=6, n_features=8, k=2, site_widths=(6,))


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_save_load_round_trip(tmp_path, arch):
    xc = _xc(arch)
    with torch.no_grad():
        xc.b_dec.normal_()
        xc.b_enc.normal_(0, 0.1)
    xc.train()
    xc(torch.randn(64, 16))  # batchtopk / matryoshka estimate their threshold
    xc.eval()
    sites = [Site("blocks.0.hook_resid_post", "m", 6, norm_scale=0.5, store="/a"),
             Site("blocks.1.hook_resid_post", "m", 10, norm_scale=2.0, store="/b")]
    save_crosscoder(xc, tmp_path / "sae", sites, {"holdout_rows": [1, 2]})
    loaded = load_crosscoder(tmp_path)  # a run folder resolves to its sae/
    assert loaded.sites == sites and loaded.extra["holdout_rows"] == [1, 2]
    with pytest.raises(UserError, match="holds a crosscoder"):
        load_sae(tmp_path / "sae")
    assert isinstance(loaded.sae, CrosscoderSAE)
    # The saved crosscoder reads raw activations: raw x = normalised x / scale, per site.
    x_norm = torch.randn(20, 16)
    scale_D = torch.cat([torch.full((6,), 0.5), torch.full((10,), 2.0)])
    with torch.no_grad():
        want = xc.decode(xc.encode(x_norm)) / scale_D
        got = loaded.sae.decode(loaded.sae.encode(x_norm / scale_D))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # Saving what was loaded writes the very same tensors again (scales 1: nothing to fold).
    unit = [Site(s.hook, s.model, s.d, 1.0, s.store) for s in sites]
    save_crosscoder(loaded.sae, tmp_path / "again", unit)
    again = load_crosscoder(tmp_path / "again")
    for name, t in loaded.sae.inference_state().items():
        assert torch.equal(again.sae.inference_state()[name], t), name


def test_load_refuses_widths_that_disagree(tmp_path):
    xc = _xc("topk")
    sites = [Site("a", "m", 6), Site("b", "m", 9)]
    with pytest.raises(UserError, match="widths"):
        save_crosscoder(xc, tmp_path / "sae", sites)
    with pytest.raises(UserError, match="holds no crosscoder"):
        load_crosscoder(tmp_path)
