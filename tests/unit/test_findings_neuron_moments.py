"""Features against neurons: the streamed correlations equal numpy's, a feature that is a neuron
has r = 1 and an independent one r ≈ 0, features and neurons without variance are counted
apart, and the MLP layer beside each hook kind."""

import numpy as np
import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.findings.neuron_corr import Accumulator
from monosemantic.findings.neuron_moments import FeatureNeuronMoments, NeuronGram
from monosemantic.findings.replay import mlp_hook_for
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.kernels import SparseCodes

N = 6000


def _brute(a_NA: np.ndarray, b_NB: np.ndarray) -> np.ndarray:
    both = np.corrcoef(np.concatenate([a_NA, b_NB], axis=1).astype(np.float64), rowvar=False)
    return both[:a_NA.shape[1], a_NA.shape[1]:]


def _data(seed: int = 0):
    """Codes x [N, 6] (sparse, >= 0) and neurons y [N, 5] far from zero (mean ~ 300)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(N, 6, generator=gen) * (torch.rand(N, 6, generator=gen) < 0.2)
    x[:, 4] = 0.0  # silent feature
    x[:, 5] = 2.0  # fires on every token with one value: constant
    y = torch.randn(N, 5, generator=gen) + 300.0
    y[:, 0] = 300.0 + 0.5 * x[:, 0]  # neuron 0 is feature 0, shifted and scaled
    y[:, 2] = y[:, 1] * -3.0 + 900.0  # neuron 2 mirrors neuron 1 (r = -1)
    y[:, 3] = 7.0  # constant neuron
    return x, y


def _streamed(x, y, batch=701):
    moments, gram = FeatureNeuronMoments(x.shape[1], y.shape[1]), NeuronGram(y.shape[1])
    for lo in range(0, N, batch):
        moments.update(SparseCodes.positive(x[lo:lo + batch]), y[lo:lo + batch])
        gram.update(y[lo:lo + batch])
    return moments, gram


def test_streamed_correlations_equal_numpy_despite_large_neuron_means():
    x, y = _data()
    moments, gram = _streamed(x, y)
    live_f, live_n = [0, 1, 2, 3], [0, 1, 2, 4]
    want = _brute(x.numpy()[:, live_f], y.numpy()[:, live_n])
    got = moments.correlations().numpy()[np.ix_(live_f, live_n)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    want_nn = _brute(y.numpy()[:, live_n], y.numpy()[:, live_n])
    got_nn = gram.correlations().numpy()[np.ix_(live_n, live_n)]
    np.fill_diagonal(want_nn, np.nan)
    np.testing.assert_allclose(got_nn, want_nn, atol=1e-6)
    # No variance: NaN, never a number.
    assert np.isnan(moments.correlations().numpy()[[4, 5]]).all()
    assert np.isnan(moments.correlations().numpy()[:, 3]).all()
    assert np.isnan(gram.correlations().numpy()[3]).all()


def _identity_sae(d: int):
    sae = create_sae(SAEConfig(architecture="relu", d_in=d, n_features=d))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_feature_equal_to_a_neuron_and_an_independent_one():
    x, y = _data()
    acc = Accumulator([_identity_sae(6)], 5)  # relu(identity): the codes are x
    for lo in range(0, N, 1000):
        acc.add(x[lo:lo + 1000], y[lo:lo + 1000])
    acc.add(x[:0], y[:0])  # an empty batch changes nothing
    (res,) = acc.results("h", "m", weak_r=0.3)
    f = res.features
    assert f.max_abs_r[0] == pytest.approx(1.0) and f.best[0] == 0 and f.r_at_max[0] > 0
    assert f.max_abs_r[1] < 0.06  # independent of every neuron
    assert list(f.best[4:]) == [-1, -1] and np.isnan(f.max_abs_r[4:]).all()
    s = res.summary()
    assert (s["n_features"], s["features_measured"], s["features_silent"],
            s["features_constant"]) == (6, 4, 1, 1)
    assert s["feature_share_weak"] == pytest.approx(3 / 4)
    assert s["features_rare"] == 0 and s["feature_share_weak_common"] == pytest.approx(3 / 4)
    assert s["n_tokens"] == N
    nb = res.neurons
    assert (nb.best[1], nb.best[2]) == (2, 1)
    assert nb.r_at_max[1] == pytest.approx(-1.0) and nb.max_abs_r[1] == pytest.approx(1.0)
    assert nb.best[3] == -1 and s["neurons_constant"] == 1 and s["neurons_measured"] == 4
    # neuron 0 (= feature 0) and neuron 4 are independent of the other neurons
    assert s["neuron_share_weak"] == pytest.approx(2 / 4)
    per = res.per_feature()
    assert per["max_abs_r"][4] is None and per["neuron"][0] == 0 and per["fires"][5] == N


class _Point:
    def __init__(self, kind, layer):
        self.kind, self.layer = kind, layer


class _LM:
    """What mlp_hook_for reads of a LoadedModel."""

    spec, n_layers = "tiny", 3

    def hook_point(self, name):
        layer, kind = name.split(".")[1], name.split(".", 2)[2]
        kinds = {"hook_resid_post": "resid_post", "hook_resid_pre": "resid_pre",
                 "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out",
                 "mlp.hook_post": "mlp_post"}
        return _Point(kinds[kind], int(layer))


@pytest.mark.parametrize(("hook", "mlp"), [
    ("blocks.1.hook_resid_post", "blocks.1.mlp.hook_post"),
    ("blocks.2.hook_mlp_out", "blocks.2.mlp.hook_post"),
    ("blocks.1.mlp.hook_post", "blocks.1.mlp.hook_post"),
    ("blocks.1.hook_resid_pre", "blocks.0.mlp.hook_post"),
    ("blocks.2.hook_attn_out", "blocks.1.mlp.hook_post"),
])
def test_the_mlp_beside_each_hook(hook, mlp):
    assert mlp_hook_for(_LM(), hook) == mlp


def test_no_mlp_before_layer_zero_and_layers_checked():
    for hook in ("blocks.0.hook_resid_pre", "blocks.0.hook_attn_out"):
        with pytest.raises(UserError, match="before any MLP"):
            mlp_hook_for(_LM(), hook)
    assert mlp_hook_for(_LM(), "blocks.0.hook_resid_pre", layer=2) == "blocks.2.mlp.hook_post"
    with pytest.raises(UserError, match="layers 0..2"):
        mlp_hook_for(_LM(), "blocks.1.hook_resid_post", layer=3)
