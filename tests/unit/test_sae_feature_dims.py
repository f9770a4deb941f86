"""`SAE.feature_dims` names every per-feature tensor of each architecture's state dict."""

import pytest

from monosemantic.sae import ARCHITECTURES, SAEConfig, create_sae


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_feature_dims_cover_every_per_feature_tensor(arch):
    n_feat, d = 24, 8  # d differs from F so that a wrong dim is caught
    sae = create_sae(SAEConfig(architecture=arch, d_in=d, n_features=n_feat, k=4))
    state, dims = sae.state_dict(), type(sae).feature_dims
    for name, dim in dims.items():
        assert state[name].shape[dim] == n_feat, name
    # Every other entry is per-SAE (b_dec, counters), not per-feature.
    for name, tensor in state.items():
        if name not in dims:
            assert n_feat not in tensor.shape, name
