"""Feature-map clusters and labels, and approximate vs exact decoder-cosine neighbours."""

import pytest
import torch

from monosemantic.analysis.decoder import nearest_by_cosine
from monosemantic.analysis.featuremap import (
    cluster_map,
    default_n_clusters,
    feature_tokens,
    label_clusters,
)


def test_kmeans_on_map_recovers_blobs():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    blob_N = torch.arange(200) % 4
    xy_N2 = centres[blob_N] + 0.5 * torch.randn(200, 2, generator=gen)
    cluster_N = cluster_map(xy_N2, n_clusters=4)
    # Same partition up to renaming: each blob maps to one cluster and back.
    pairs = set(zip(blob_N.tolist(), cluster_N.tolist()))
    assert len(pairs) == 4 and len({c for _, c in pairs}) == 4
    assert default_n_clusters(4096) == 32 and default_n_clusters(10) == 2
    assert default_n_clusters(10**6) == 200


def test_labels_prefer_distinctive_tokens():
    cluster_F = torch.tensor([0, 0, 0, 1, 1, 2])
    # Token 1 is everywhere (a newline, say); 5 marks cluster 0, 6 cluster 1, 7 cluster 2.
    tokens_F = [{1, 5}, {1, 5, 9}, {1, 5}, {1, 6}, {1, 6}, {1, 7}]
    names = {1: "\n", 5: " import", 6: " return", 7: "#", 9: " np"}
    out = label_clusters(cluster_F, tokens_F, lambda t: names[t], n_label=2)
    assert [c["id"] for c in out] == [0, 1, 2]
    assert [c["size"] for c in out] == [3, 2, 1]
    assert out[0]["tokens"] == [5, 9] and out[0]["label"] == "import · np"
    assert out[1]["tokens"] == [6] and out[2]["label"] == "#"


def test_feature_tokens_reads_peaks_then_logits_for_silent_features():
    tokens_FRW = torch.tensor([[[3, 4, -1], [8, 9, 10]], [[5, -1, -1], [-1, -1, -1]],
                               [[-1, -1, -1], [-1, -1, -1]]], dtype=torch.int32)
    offset_FR = torch.tensor([[1, 2], [0, 0], [0, 0]], dtype=torch.int16)
    logits_FT = torch.tensor([[20, 21], [22, 23], [24, 25]])
    sets = feature_tokens(tokens_FRW, offset_FR, logits_FT, n_examples=2, n_logits=1)
    assert sets == [{4, 10}, {5}, {24}]


def test_labels_merge_tokens_that_display_alike():
    cluster_F = torch.tensor([0, 0, 1])
    names = {1: " element", 2: "element", 3: "x"}
    out = label_clusters(cluster_F, [{1}, {2}, {3}], lambda t: names[t])
    assert out[0]["label"] == "element" and out[0]["tokens"] == [1]


def clustered_directions(n_feat, d, seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, d, generator=gen)
    return centres[torch.arange(n_feat) % 20] + 0.4 * torch.randn(n_feat, d, generator=gen)


@pytest.mark.parametrize("n", [1, 3])
def test_exact_neighbours_equal_brute_force(n):
    W_FD = clustered_directions(200, 8, seed=1)
    ids, cos = nearest_by_cosine(W_FD, n, chunk=64)
    unit_FD = W_FD / W_FD.norm(dim=1, keepdim=True)
    cos_FF = unit_FD @ unit_FD.T
    cos_FF.fill_diagonal_(-2.0)
    best = cos_FF.topk(n, dim=1)
    assert torch.equal(ids, best.indices)
    assert torch.allclose(cos, best.values, atol=1e-5)
