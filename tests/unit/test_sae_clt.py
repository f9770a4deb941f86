"""Cross-layer transcoders on tiny tensors: shapes, loss terms, the per-layer special case,
save/load, layer specs and refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from monosemantic.config import ConfigError
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae, load_sae
from monosemantic.sae.clt import CrossLayerTranscoder, parse_layers
from monosemantic.sae.clt_io import load_clt, save_clt

D, F, LAYERS = 6, 12, (1, 2, 4)
ARCHS = ("topk", "batchtopk", "relu", "jumprelu")


def _clt(arch: str, seed: int = 0) -> CrossLayerTranscoder:
    torch.manual_seed(seed)
    cfg = SAEConfig(architecture=arch, d_in=D, n_features=F, k=3, l1_coefficient=0.3,
                    jumprelu_init_threshold=0.05)
    clt = CrossLayerTranscoder(cfg, LAYERS)
    with torch.no_grad():
        clt.b_dec.normal_(0, 0.1)
    return clt


def _sites(x_BD: torch.Tensor) -> dict[int, torch.Tensor]:
    return {layer: x_BD[:, i * D:(i + 1) * D] for i, layer in enumerate(LAYERS)}


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes(arch):
    clt, n = _clt(arch), len(LAYERS)
    assert [tuple(e.W_dec.shape) for e in clt.encoders] == [(F, 3 * D), (F, 2 * D), (F, D)]
    x, y = torch.randn(16, n * D), torch.randn(16, n * D)
    out = clt(x, target_BD=y, dead_mask_F=torch.ones(n * F, dtype=torch.bool))
    assert out.x_hat_BD.shape == (16, n * D) and out.fires_F().shape == (n * F,)
    acts_SF = clt.encode(2, torch.randn(5, 7, D))
    assert acts_SF.shape == (5, 7, F)
    assert clt.decode_to(2, 4, acts_SF).shape == (5, 7, D)
    assert clt.W_dec_to(1, 4).shape == (F, D)
    with pytest.raises(UserError, match="write only to layers >= 2"):
        clt.decode_to(2, 1, acts_SF)
    with pytest.raises(UserError, match="not one of this CLT's layers"):
        clt.encode(3, torch.randn(2, D))


@pytest.mark.parametrize("arch", ARCHS)
def test_mse_is_the_sum_over_target_layers_of_the_joint_prediction(arch):
    clt = _clt(arch).eval()
    x, y = torch.randn(32, 3 * D), torch.randn(32, 3 * D)
    out = clt(x, target_BD=y)
    predicted = clt.predict(_sites(x))
    expected = sum(((y_D - predicted[layer]) ** 2).sum(-1).mean()
                   for layer, y_D in _sites(y).items())
    torch.testing.assert_close(out.losses["mse"], expected)
    # ŷ_4 sums the writes of layers 1, 2 and 4, plus its bias
    codes = {layer: clt.encode(layer, xs) for layer, xs in _sites(x).items()}
    by_hand = clt.bias(4) + sum(clt.decode_to(s, 4, codes[s]) for s in LAYERS)
    torch.testing.assert_close(predicted[4], by_hand)


def test_relu_penalty_weights_codes_by_the_concatenated_decoder_norm():
    clt = _clt("relu")
    x, y = torch.randn(32, 3 * D), torch.randn(32, 3 * D)
    out = clt(x, target_BD=y, l1_scale=0.5)
    expected = 0.0
    for layer, xs in _sites(x).items():
        f_BF = torch.relu(clt.encoder(layer).pre_acts(xs))
        norms_F = torch.cat([clt.W_dec_to(layer, t) for t in LAYERS if t >= layer], 1).norm(dim=1)
        expected += (f_BF * norms_F).sum(-1).mean()
    torch.testing.assert_close(out.losses["l1"], 0.3 * 0.5 * expected)
    torch.testing.assert_close(out.loss, out.losses["mse"] + out.losses["l1"])


def test_jumprelu_l0_and_topk_aux_are_summed_over_layers():
    x, y = torch.randn(32, 3 * D), torch.randn(32, 3 * D)
    clt = _clt("jumprelu")
    out = clt(x, target_BD=y)
    l0 = sum((clt.encoder(layer).pre_acts(xs) > 0.05).float().sum(-1).mean()
             for layer, xs in _sites(x).items())
    torch.testing.assert_close(out.losses["l0"], l0)
    topk = _clt("topk")
    assert "aux" not in topk(x, target_BD=y).losses
    dead = torch.zeros(3 * F, dtype=torch.bool)
    dead[F:F + 4] = True  # four dead features of the second layer only
    aux = topk(x, target_BD=y, dead_mask_F=dead).losses["aux"]
    assert float(aux.detach()) > 0
    aux.backward()  # only the second layer's dead features reconstruct the residual
    grad_DF = topk.encoders[1].W_enc.grad
    assert grad_DF[:, :4].abs().sum() > 0 and grad_DF[:, 4:].abs().sum() == 0
    assert topk.encoders[0].W_enc.grad is None or topk.encoders[0].W_enc.grad.abs().sum() == 0


@pytest.mark.parametrize("arch", ("topk", "relu", "jumprelu"))
def test_own_layer_decoders_reproduce_per_layer_transcoders(arch):
    """With every cross-layer decoder zero, a CLT is n per-layer transcoders: the same
    predictions and the same loss terms, summed."""
    clt = _clt(arch)
    with torch.no_grad():
        for enc in clt.encoders:
            enc.W_dec[:, D:] = 0
    x, y = torch.randn(32, 3 * D), torch.randn(32, 3 * D)
    predicted = clt.predict(_sites(x))
    out = clt(x, target_BD=y)
    totals: dict[str, torch.Tensor] = {}
    for layer, xs in _sites(x).items():
        tc = create_sae(dataclasses.replace(clt.cfg, d_out=D))
        with torch.no_grad():
            enc = clt.encoder(layer)
            tc.W_enc.copy_(enc.W_enc)
            tc.b_enc.copy_(enc.b_enc)
            tc.W_dec.copy_(clt.W_dec_to(layer, layer))
            tc.b_dec.copy_(clt.bias(layer))
            if arch == "jumprelu":
                tc.log_threshold.copy_(enc.log_threshold)
        torch.testing.assert_close(predicted[layer], tc.reconstruct(xs))
        tc_out = tc(xs, target_BD=_sites(y)[layer])
        for name, value in tc_out.losses.items():
            totals[name] = totals.get(name, 0) + value
    for name, value in totals.items():  # topk's forward always lists its aux, 0 here
        torch.testing.assert_close(out.losses.get(name, torch.zeros(())), value)
    assert set(out.losses) <= set(totals)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip_is_bit_identical(arch, tmp_path):
    clt = _clt(arch)
    x, y = torch.randn(64, 3 * D), torch.randn(64, 3 * D)
    clt(x, target_BD=y)  # batchtopk: one training step's threshold
    clt.eval()
    save_clt(clt, tmp_path / "clt", extra_metadata={"model": "tiny"})
    loaded = load_clt(tmp_path / "clt")
    assert loaded.layers == LAYERS and not loaded.training
    before, after = clt.predict(_sites(x)), loaded.predict(_sites(x))
    for layer in LAYERS:
        assert torch.equal(before[layer], after[layer])
        assert torch.equal(clt.encode(layer, _sites(x)[layer]),
                           loaded.encode(layer, _sites(x)[layer]))


def test_save_folds_each_sites_scale(tmp_path):
    clt = _clt("relu").eval()
    s, t = [2.0, 0.5, 4.0], [3.0, 0.25, 1.5]
    save_clt(clt, tmp_path / "clt", norm_scales=s, target_norm_scales=t)
    loaded = load_clt(tmp_path / "clt")
    raw = torch.randn(8, 3 * D)
    scaled = {layer: x * s[i] for i, (layer, x) in enumerate(_sites(raw).items())}
    normalised, folded = clt.predict(scaled), loaded.predict(_sites(raw))
    for i, layer in enumerate(LAYERS):
        torch.testing.assert_close(folded[layer], normalised[layer] / t[i])


def test_load_sae_refuses_a_clt_folder(tmp_path):
    save_clt(_clt("topk"), tmp_path / "clt")
    with pytest.raises(UserError, match="cross-layer transcoder"):
        load_sae(tmp_path / "clt")
    with pytest.raises(UserError, match="not a saved cross-layer transcoder"):
        load_clt(tmp_path)


def test_parse_layers():
    assert parse_layers("0-3") == (0, 1, 2, 3)
    assert parse_layers("5,0,2") == (0, 2, 5)
    assert parse_layers("0-2,5, 1") == (0, 1, 2, 5)
    for bad in ("a", "3-1", "-1", "0-", ""):
        with pytest.raises(ConfigError, match="clt-layers"):
            parse_layers(bad)


def test_refused_architectures_and_options():
    with pytest.raises(ConfigError, match="matryoshka cannot be a cross-layer transcoder"):
        CrossLayerTranscoder(SAEConfig(architecture="matryoshka", d_in=D, n_features=F, k=3),
                             LAYERS)
    with pytest.raises(ConfigError, match="skip connections"):
        CrossLayerTranscoder(SAEConfig(d_in=D, d_out=D, apply_b_dec_to_input=False,
                                       n_features=F, skip=True), LAYERS)
    with pytest.raises(ConfigError, match="distinct and ascending"):
        CrossLayerTranscoder(SAEConfig(d_in=D, n_features=F), (2, 1))
