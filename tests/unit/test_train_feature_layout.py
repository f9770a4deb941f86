"""Feature-parallel pieces that need no process group: the split, its refusals, a shard's
slices of the init, and the global-norm clipping (a one-rank shard is the whole dictionary)."""

import pytest
import torch

from monosemantic.distributed import Ranks
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.train.config import TrainConfig
from monosemantic.train.feature_parallel import (
    FeatureShard,
    clip_grad_norm_,
    feature_layout,
    split_features,
)


def test_split_gives_contiguous_equal_slices():
    shards = [split_features(Ranks(rank=r, world=4), 256) for r in range(4)]
    assert [(s.lo, s.hi) for s in shards] == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert all(s.n_features == 256 and s.world == 4 for s in shards)


def test_split_refuses_a_world_that_does_not_divide_f():
    with pytest.raises(UserError, match="3 ranks cannot do.*1, 2, 4, 8, 16, 32, 64"):
        split_features(Ranks(rank=1, world=3), 256)


def test_feature_shard_only_under_torchrun_and_only_for_stores(tmp_path):
    cfg = TrainConfig(tmp_path / "run", store=tmp_path / "acts", parallel="features")
    assert feature_layout(cfg, Ranks()) == (None, Ranks())  # one process: the ordinary run
    data = TrainConfig(tmp_path / "run", store=tmp_path)
    assert feature_layout(data, Ranks(0, 2)) == (None, Ranks(0, 2))
    shard, axis = feature_layout(cfg, Ranks(1, 2))
    assert shard == FeatureShard(1, 2, lo=8192, hi=16384, n_features=16384)
    assert not axis.active and axis.is_main  # no data axis
    with pytest.raises(UserError, match="pass --store"):
        feature_layout(cfg, Ranks(0, 2), custom_data=True)
    cfg.feature_ranks = 3
    with pytest.raises(UserError, match="--feature-ranks 3 does not divide the 4 ranks"):
        feature_layout(cfg, Ranks(0, 4))
    cfg.compile = True
    with pytest.raises(UserError, match="--compile"):
        feature_layout(cfg, Ranks(0, 2))
    cfg.compile = False
    cfg.sae = SAEConfig("matryoshka", n_features=256)
    with pytest.raises(UserError, match="cannot train a matryoshka SAE.*--parallel data"):
        feature_layout(cfg, Ranks(0, 2))


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu"])
def test_keep_features_keeps_the_slice_of_every_feature_tensor(arch):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(arch, d_in=6, n_features=40, k=3))
    whole = {k: v.clone() for k, v in sae.state_dict().items()}
    shard = FeatureShard(rank=1, world=4, lo=10, hi=20, n_features=40)
    sae.keep_features_(shard)
    for name, value in sae.state_dict().items():
        dim = sae.feature_dims.get(name)
        want = whole[name] if dim is None else whole[name].narrow(dim, 10, 10)
        assert torch.equal(value, want), name
    assert sae.shard is shard
    assert {n for n, _ in sae.named_parameters()} >= {"W_enc", "b_enc", "W_dec", "b_dec"}
    with pytest.raises(ValueError, match="whole dictionary"):
        sae.keep_features_(shard)


@pytest.mark.parametrize("max_norm", [0.01, 100.0])
def test_clipping_of_a_single_shard_is_torch_clipping(max_norm):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig("relu", d_in=6, n_features=20))
    sae(torch.randn(8, 6)).loss.backward()
    ref = [torch.nn.Parameter(p.detach().clone()) for p in sae.parameters()]
    for r, p in zip(ref, sae.parameters()):
        r.grad = p.grad.clone()
    norm = float(torch.nn.utils.clip_grad_norm_(ref, max_norm))
    grads = [r.grad for r in ref]
    clip_grad_norm_(sae, FeatureShard(0, 1, lo=0, hi=20, n_features=20), max_norm)
    assert (norm > max_norm) == (max_norm == 0.01)  # one case clips, the other does not
    for (name, p), want in zip(sae.named_parameters(), grads):
        assert torch.allclose(p.grad, want, rtol=1e-6, atol=0), name
