"""Matching and classifying features across two hand-built decoders: a known split, a copied
feature, a drifting one, a vanishing one and a new direction."""

import numpy as np
import pytest
import torch

from monosemantic.findings.matching import (
    LARGE_CLASSES,
    SMALL_CLASSES,
    best_parent,
    classify,
    nearest_twin_cosines,
    pair_cosines,
    top_cosines,
)

E = torch.eye(8)
# small: 0 = normalised e0 + e1 (splits), 1 = e2 (copied), 2 = e3 (drifts), 3 = e6 (vanishes)
W_SMALL = torch.stack([(E[0] + E[1]) / 2 ** 0.5, E[2], E[3], E[6]]) * 3.0  # norms do not matter
# large: e0, e1 (the split's children), e2 (the copy), 0.6·e3 + 0.8·e5 (drift), e4 (new)
W_LARGE = torch.stack([E[0], E[1], E[2], 0.6 * E[3] + 0.8 * E[5], E[4]])
ALL_S, ALL_L = np.ones(4, bool), np.ones(5, bool)


def _classes(alive_S=ALL_S, alive_L=ALL_L, child=0.5, persist=0.8):
    ids, cos = top_cosines(W_LARGE, W_SMALL, n_top=2, alive_S=torch.from_numpy(alive_S))
    match = best_parent(ids, cos, alive_L)
    return match, classify(match, alive_S, alive_L, child, persist)


def test_parents_and_cosines_by_decoder():
    match, _ = _classes()
    assert match.parent_L[:4].tolist() == [0, 0, 1, 2]  # e4's parent is any: all cosines 0
    assert match.score_L[:4] == pytest.approx([2 ** -0.5, 2 ** -0.5, 1.0, 0.6], abs=1e-6)
    assert match.score_L[4] == pytest.approx(0.0, abs=1e-6)  # e4 is orthogonal to every parent


def test_split_persist_drift_vanish_appear():
    _, classes = _classes()
    assert [SMALL_CLASSES[c] for c in classes.small_S] == ["split", "persist", "drift", "vanish"]
    assert [LARGE_CLASSES[c] for c in classes.large_L] == [
        "child_of_split", "child_of_split", "child_of_persist", "child_of_drift", "appear"]
    assert classes.n_children_S.tolist() == [2, 1, 1, 0]
    shares = classes.shares()
    assert shares["small"]["counts"] == {"split": 1, "persist": 1, "drift": 1, "vanish": 1}
    assert sum(shares["small"]["shares"].values()) == pytest.approx(1.0)
    assert sum(shares["large"]["shares"].values()) == pytest.approx(1.0)
    assert shares["large"]["shares"]["appear"] == pytest.approx(0.2)


def test_a_split_needs_both_children_above_the_child_threshold():
    _, classes = _classes(child=0.75, persist=0.9)  # 1/√2 < 0.75: the halves are no children
    assert [SMALL_CLASSES[c] for c in classes.small_S] == ["vanish", "persist", "vanish",
                                                            "vanish"]
    assert [LARGE_CLASSES[c] for c in classes.large_L] == [
        "appear", "appear", "child_of_persist", "appear", "appear"]


def test_silent_features_are_left_out_on_both_sides():
    alive_S = np.array([True, False, True, True])
    alive_L = np.array([True, True, True, True, False])
    match, classes = _classes(alive_S, alive_L)
    assert match.parent_L[4] == -1 and match.parent_L[2] != 1  # the silent copy is no parent
    assert classes.small_S[1] == -1 and classes.large_L[4] == -1
    shares = classes.shares()
    assert (shares["small"]["n"], shares["small"]["silent"]) == (3, 1)
    assert (shares["large"]["n"], shares["large"]["silent"]) == (4, 1)
    assert LARGE_CLASSES[classes.large_L[2]] == "appear"  # its parent is silent


def test_best_parent_by_correlation_skips_nan():
    ids = torch.tensor([[0, 1], [1, 0]])
    r = torch.tensor([[float("nan"), 0.3], [float("nan"), float("nan")]])
    match = best_parent(ids, r)
    assert match.parent_L.tolist() == [1, -1] and match.score_L[1] == -np.inf


def test_pair_cosines():
    got = pair_cosines(W_LARGE, W_SMALL, np.array([0, 3]), np.array([0, 2]))
    assert got == pytest.approx([2 ** -0.5, 0.6], abs=1e-6)


def test_nearest_twin_cosines_within_one_dictionary():
    # rows: e0, a copy of e0 (scaled), 0.6·e0 + 0.8·e1, e2 (silent), e3
    W = torch.stack([E[0], 2.0 * E[0], 0.6 * E[0] + 0.8 * E[1], E[2], E[3]])
    alive = np.array([True, True, True, False, True])
    assert nearest_twin_cosines(W, alive) == pytest.approx([1.0, 1.0, 0.6, 0.0], abs=1e-6)
    assert len(nearest_twin_cosines(W, np.array([True, False, False, False, False]))) == 0
