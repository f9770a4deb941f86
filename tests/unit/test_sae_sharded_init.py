"""A feature shard's init is its slice of the unsharded init from the same seed, drawn chunk by
chunk without the whole dictionary, and leaves the generator where the unsharded init does."""

import pytest
import torch

from monosemantic.sae import SAEConfig, create_sae, sharded
from monosemantic.sae.factory import ARCHITECTURES
from monosemantic.train.feature_parallel import FeatureShard


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 22])
@pytest.mark.parametrize(("n_rows", "width"), [(256, 16), (300, 7), (1000, 13), (33, 1),
                                               (17, 1), (5, 3), (97, 5), (64, 640)])
def test_randn_rows_are_rows_of_one_draw(monkeypatch, chunk, n_rows, width):
    monkeypatch.setattr(sharded, "RANDN_CHUNK_FLOATS", chunk)
    quarter, half = n_rows // 4, n_rows // 2
    for lo, hi in [(0, n_rows), (0, half), (half, n_rows), (quarter, half)]:
        if lo >= hi:
            continue
        torch.manual_seed(0)
        whole, after = torch.randn(n_rows, width), torch.rand(4)
        torch.manual_seed(0)
        rows = sharded.randn_rows(n_rows, width, lo, hi)
        assert torch.equal(rows, whole[lo:hi]), (lo, hi)
        assert torch.equal(torch.rand(4), after)  # the generator moved on as far


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("world", [1, 2, 4])
def test_sharded_create_is_the_slice_of_the_unsharded_init(monkeypatch, arch, world):
    monkeypatch.setattr(sharded, "RANDN_CHUNK_FLOATS", 96)  # several chunks
    cfg = SAEConfig(arch, d_in=7, n_features=48, k=3)
    torch.manual_seed(5)
    whole, after = create_sae(cfg).state_dict(), torch.rand(4)
    width = 48 // world
    for rank in range(world):
        shard = FeatureShard(rank, world, lo=rank * width, hi=(rank + 1) * width, n_features=48)
        torch.manual_seed(5)
        sae = create_sae(cfg, shard)
        assert torch.equal(torch.rand(4), after)
        assert sae.shard is shard
        state = sae.state_dict()
        assert state.keys() == whole.keys()
        for name, value in whole.items():
            dim = sae.feature_dims.get(name)
            want = value if dim is None else value.narrow(dim, shard.lo, width)
            assert state[name].device.type == "cpu"
            assert torch.equal(state[name], want), (rank, name)
