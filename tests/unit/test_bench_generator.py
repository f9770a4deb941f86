"""The synthetic-feature generator: statistics, structure, determinism, bad options."""

import pytest
import torch

from monosemantic.bench.synthetic import ROLES, SyntheticConfig, SyntheticFeatures
from monosemantic.config import ConfigError

N = 20_000


@pytest.fixture(scope="module")
def drawn():
    feats = SyntheticFeatures(SyntheticConfig(d=24, n_true=64, mean_active=3.0, seed=3))
    x_ND, truth = feats.chunk(0, N)
    return feats, x_ND, truth


def test_dictionary_is_unit_norm_and_frequencies_sum_to_mean_active(drawn):
    feats, _, _ = drawn
    assert feats.directions_TD.shape == (64, 24)
    assert torch.allclose(feats.directions_TD.norm(dim=1), torch.ones(64), atol=1e-5)
    assert float(feats.frequency_T.sum()) == pytest.approx(3.0, rel=1e-6)
    assert float(feats.frequency_T.max()) <= 0.25 + 1e-12


def test_frequencies_are_zipf_like(drawn):
    feats, _, _ = drawn
    p_S = feats.source_prob_S.sort(descending=True).values
    uncapped = p_S[p_S < 0.25]
    # p ∝ rank^-1: p_r · r is constant over the uncapped ranks.
    ranks = torch.arange(len(p_S), dtype=torch.float64)[p_S < 0.25] + 1
    product = uncapped * ranks
    assert float(product.max() / product.min()) == pytest.approx(1.0, abs=1e-9)


def test_drawn_tokens_match_the_stated_statistics(drawn):
    feats, x_ND, truth = drawn
    assert x_ND.dtype == torch.float32 and x_ND.shape == (N, 24)
    assert truth.row_N.shape[0] / N == pytest.approx(3.0, rel=0.03)
    empirical_T = torch.bincount(truth.idx_N, minlength=64).double() / N
    se_T = (feats.frequency_T * (1 - feats.frequency_T) / N).sqrt()
    assert bool(((empirical_T - feats.frequency_T).abs() <= 5 * se_T + 1e-4).all())
    # Noiseless: the tokens are exactly the true activations times the directions.
    assert torch.allclose(x_ND, truth.dense() @ feats.directions_TD, atol=1e-5)
    assert float(truth.vals_N.min()) >= 0.5 and float(truth.vals_N.max()) <= 1.5


def test_children_fire_only_with_their_parent_and_groups_co_occur(drawn):
    feats, _, truth = drawn
    fires_NT = truth.dense() > 0
    kids = (feats.parent_T >= 0).nonzero().squeeze(1)
    assert len(kids) == 4 * 3
    for kid in kids.tolist():
        parent = int(feats.parent_T[kid])
        assert bool(fires_NT[:, kid].any())
        assert not bool((fires_NT[:, kid] & ~fires_NT[:, parent]).any())
    members = (feats.role_T == ROLES.index("group")).nonzero().squeeze(1)[:2].tolist()
    a, b = fires_NT[:, members[0]].double(), fires_NT[:, members[1]].double()
    # Members of one group fire together far more often than independence predicts.
    assert float((a * b).mean()) > 5 * float(a.mean() * b.mean())


def test_children_sit_at_the_stated_cosine_to_their_parent():
    feats = SyntheticFeatures(SyntheticConfig(d=24, n_true=64, child_cosine=0.8))
    kids = (feats.parent_T >= 0).nonzero().squeeze(1)
    cos_K = (feats.directions_TD[kids] * feats.directions_TD[feats.parent_T[kids]]).sum(1)
    assert torch.allclose(cos_K, torch.full_like(cos_K, 0.8), atol=1e-5)


def test_rows_do_not_depend_on_the_chunking():
    feats = SyntheticFeatures(SyntheticConfig(d=8, n_true=24, n_groups=1, n_parents=1, seed=5))
    assert feats.block_rows == 4096
    whole_x, whole = feats.chunk(0, 9000)
    parts = list(feats.chunks(9000 - 100, chunk_rows=1234, start=100))
    x = torch.cat([p[0] for p in parts])
    dense = torch.cat([p[1].dense() for p in parts])
    assert torch.equal(x, whole_x[100:]) and torch.equal(dense, whole.dense()[100:])
    again_x, _ = SyntheticFeatures(feats.cfg).chunk(0, 9000)
    assert torch.equal(again_x, whole_x)
    other_x, _ = SyntheticFeatures(SyntheticConfig(d=8, n_true=24, n_groups=1, n_parents=1,
                                                   seed=6)).chunk(0, 9000)
    assert not torch.equal(other_x, whole_x)


@pytest.mark.parametrize("magnitude", ["uniform", "exponential", "lognormal"])
def test_magnitudes_have_mean_one_and_noise_has_the_stated_size(magnitude):
    feats = SyntheticFeatures(SyntheticConfig(d=16, n_true=32, mean_active=2.0, n_groups=0,
                                              n_parents=0, magnitude=magnitude, noise=0.5))
    x_ND, truth = feats.chunk(0, 20_000)
    assert float(truth.vals_N.mean()) == pytest.approx(1.0, abs=0.03)
    noise_ND = x_ND - truth.dense() @ feats.directions_TD
    assert float(noise_ND.std()) == pytest.approx(feats.noise_std, rel=0.03)
    signal_rms = float((truth.dense() @ feats.directions_TD).square().mean().sqrt())
    assert float(noise_ND.std()) == pytest.approx(0.5 * signal_rms, rel=0.1)


@pytest.mark.parametrize("change, message", [
    ({"n_true": 10}, "raise --n-true"),
    ({"mean_active": 100.0}, "--mean-active must be in"),
    ({"d": 0}, "--d must be an integer >= 1"),
    ({"child_cosine": 1.0}, "--child-cosine"),
    ({"noise": -1.0}, "--noise must be >= 0"),
    ({"group_member_prob": 0.0}, "--group-member-prob"),
    ({"magnitude": "gaussian"}, "--magnitude"),
])
def test_bad_options_are_refused_by_name(change, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticFeatures(SyntheticConfig(**change))
