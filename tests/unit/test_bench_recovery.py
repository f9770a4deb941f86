"""Recovery scores on hand-built dictionaries: perfect, permuted, sign-flipped, random."""

import math

import pytest
import torch

from monosemantic.bench.recovery import (
    cosine_matrix,
    match_features,
    score_recovery,
)
from monosemantic.bench.synthetic import SyntheticConfig, SyntheticFeatures

ROWS = 6000


@pytest.fixture(scope="module")
def truth():
    feats = SyntheticFeatures(SyntheticConfig(d=16, n_true=32, mean_active=2.0, n_groups=1,
                                              group_size=3, n_parents=1, children_per_parent=2))
    x_ND, acts = feats.chunk(0, ROWS)
    return feats, x_ND, acts


def _score(W_dec_FD, codes_NF, acts, feats, **kw):
    return score_recovery(W_dec_FD, feats.directions_TD, [(codes_NF, acts)], **kw)


def test_the_true_dictionary_scores_one(truth):
    feats, _, acts = truth
    rec = _score(feats.directions_TD, acts.dense(), acts, feats)
    s = rec.summary(feats.frequency_T)
    assert s["mean_cosine"] == pytest.approx(1.0) and s["recovered"] == 1.0
    assert s["mcc"] == pytest.approx(1.0) and s["f1"] == 1.0
    assert s["precision"] == 1.0 and s["recall"] == 1.0
    assert torch.equal(rec.matched_T, torch.arange(32))
    assert sum(b["n_true"] for b in s["by_frequency"]) == 32


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_a_permuted_rescaled_overcomplete_dictionary_is_matched(truth, method):
    feats, _, acts = truth
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    spare_FD = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    # Decoder rows of other norms, in another order, with spare rows the matching must skip.
    W_FD = torch.cat([3.0 * feats.directions_TD[perm], spare_FD])
    codes_NF = torch.cat([acts.dense()[:, perm] / 3.0, torch.zeros(ROWS, 16)], dim=1)
    rec = _score(W_FD, codes_NF, acts, feats, method=method)
    assert torch.equal(perm[rec.matched_T], torch.arange(32))
    s = rec.summary()
    assert s["mean_cosine"] == pytest.approx(1.0) and s["mcc"] == pytest.approx(1.0)


def test_a_sign_flipped_dictionary_is_not_a_recovery_unless_matched_by_abs(truth):
    feats, _, acts = truth
    flipped_TD = -feats.directions_TD
    assert _score(flipped_TD, acts.dense(), acts, feats).summary()["recovered"] == 0.0
    rec = _score(flipped_TD, acts.dense(), acts, feats, absolute=True)
    assert torch.equal(rec.matched_T, torch.arange(32))
    assert rec.summary()["mean_cosine"] == pytest.approx(1.0)


def test_a_random_dictionary_scores_low(truth):
    feats, x_ND, acts = truth
    W_FD = torch.randn(64, 16, generator=torch.Generator().manual_seed(2))
    codes_NF = torch.relu(x_ND @ W_FD.T)
    s = _score(W_FD, codes_NF, acts, feats).summary()
    assert s["mean_cosine"] < 0.7 and s["recovered"] < 0.1
    assert s["mcc"] < 0.6 and s["f1"] < 0.4


def test_activation_scores_follow_their_definitions():
    # One true feature firing on rows 0-3; the SAE feature fires on rows 2-5.
    true_TD, w_FD = torch.eye(2)[:1], torch.eye(2)[:1]
    from monosemantic.sae.kernels import SparseCodes

    acts = SparseCodes(torch.arange(4), torch.zeros(4, dtype=torch.long), torch.ones(4), 8, 1)
    codes_N1 = torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.float32).T
    rec = score_recovery(w_FD, true_TD, [(codes_N1, acts)])
    assert float(rec.precision_T[0]) == pytest.approx(0.5)
    assert float(rec.recall_T[0]) == pytest.approx(0.5)
    assert float(rec.f1_T[0]) == pytest.approx(0.5)
    # Pearson of two 0/1 vectors of 8 with 4 ones each sharing 2: (2/8 - 1/4) / (1/4) = 0.
    assert float(rec.corr_T[0]) == pytest.approx(0.0, abs=1e-12)


def test_unmatched_and_never_firing_features_are_handled():
    true_TD = torch.eye(3)
    cos_FT = cosine_matrix(torch.eye(3)[:2], true_TD)
    match_T = match_features(cos_FT)
    assert match_T.tolist() == [0, 1, -1]  # F < T: one true feature stays unmatched
    from monosemantic.sae.kernels import SparseCodes

    acts = SparseCodes(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.ones(2), 4, 3)
    codes_NF = torch.zeros(4, 2)  # the SAE never fires
    rec = score_recovery(torch.eye(3)[:2], true_TD, [(codes_NF, acts)])
    assert rec.cosine_T.tolist() == [1.0, 1.0, 0.0]
    assert rec.corr_T[:2].tolist() == [0.0, 0.0] and math.isnan(float(rec.corr_T[2]))
    s = rec.summary()
    assert s["mean_cosine"] == pytest.approx(2 / 3) and s["n_scored"] == 2
    assert s["precision"] == 0.0 and s["recall"] == 0.0
