"""The filter and the sparse logistic regression on precomputed matrices (no model)."""

import pytest
import torch

from monosemantic.analysis.classify import (
    fit_classifier,
    fit_l1_logistic,
    read_labelled,
    stratified_split,
)
from monosemantic.analysis.search import select_features
from monosemantic.errors import UserError


def test_select_features_definition_and_order():
    pos_PF = torch.tensor([[0.5, 0.3, 0.0, 0.9, 0.25],
                           [0.6, 0.2, 0.4, 0.8, 0.3]])
    neg_NF = torch.tensor([[0.0, 0.05, 0.0, 0.2, 0.0]])
    hits = select_features(pos_PF, neg_NF, torch.full((5,), 0.1), top=10)
    # 2 misses a positive, 3 fires on the negative; 0, 1 and 4 pass, by min positive.
    assert [h.feature for h in hits] == [0, 4, 1]
    assert hits[0].min_positive == pytest.approx(0.5)
    assert hits[0].mean_positive == pytest.approx(0.55)
    assert hits[2].max_negative == pytest.approx(0.05)
    per_feature = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.25])
    assert [h.feature for h in select_features(pos_PF, neg_NF, per_feature, top=1)] == [0]
    assert [h.feature for h in select_features(pos_PF, neg_NF[:0], per_feature, top=9)] == [3, 0, 1]


def test_l1_logistic_recovers_the_informative_column():
    gen = torch.Generator().manual_seed(0)
    X_NC = torch.rand(400, 50, generator=gen)
    y_N = (X_NC[:, 7] > 0.5).long()
    w_C, _b, _ = fit_l1_logistic(X_NC, y_N, l1=0.02)
    assert int(w_C.abs().argmax()) == 7 and w_C[7] > 0
    assert int((w_C != 0).sum()) < 10  # sparse
    # No penalty: a strong fit on a separable problem; a huge penalty: all zero.
    w0_C, b0, _ = fit_l1_logistic(X_NC, y_N, 0.0)
    assert float(((X_NC @ w0_C + b0) > 0).long().eq(y_N).float().mean()) > 0.95
    assert int((fit_l1_logistic(X_NC, y_N, l1=10.0)[0] != 0).sum()) == 0


def test_fit_classifier_split_and_mean_columns():
    gen = torch.Generator().manual_seed(1)
    n, F = 200, 20
    X_NC = torch.rand(n, 2 * F, generator=gen) * 0.1
    labels = (torch.rand(n, generator=gen) < 0.4).long()
    X_NC[:, F + 5] += labels * 3.0  # mean column of feature 5 carries the label
    res = fit_classifier(X_NC, labels.tolist(), l1=0.01, top=3, n_features=F, heldout=0.25)
    assert res.features[0][0] == 5
    assert res.terms[0][:2] == (5, "mean")
    assert res.n_train + res.n_heldout == n and res.heldout_accuracy == 1.0
    with pytest.raises(UserError, match="labels"):
        fit_classifier(X_NC, [0] * n, l1=0.01, top=3, n_features=F)


def test_stratified_split_keeps_class_shares():
    labels = torch.tensor([0] * 40 + [1] * 20)
    train, held = stratified_split(labels, 0.25, seed=0)
    assert len(set(train.tolist()) | set(held.tolist())) == 60
    assert int(labels[held].sum()) == 5 and int((labels[held] == 0).sum()) == 10


def test_read_labelled_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n')
    assert read_labelled(path) == (["a", "b"], [1, 0])
    path.write_text('{"text": "a", "label": 3}\n')
    with pytest.raises(UserError, match="d.jsonl:1"):
        read_labelled(path)
    with pytest.raises(UserError, match="not found"):
        read_labelled(tmp_path / "missing.jsonl")
