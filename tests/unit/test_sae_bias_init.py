"""`SAEConfig.b_dec_init`: the data-dependent initial decoder bias (and relu's centred b_enc)."""

import pytest
import torch

from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.bias_init import geometric_median
from monosemantic.train.config import TrainConfig, changed_fields


def shifted_rows(n: int = 200, d: int = 8) -> torch.Tensor:
    """Rows with a mean far from 0 and one outlier (mean and geometric median differ)."""
    gen = torch.Generator().manual_seed(0)
    x_ND = torch.randn(n, d, generator=gen) + 5.0 * torch.linspace(-1, 1, d)
    x_ND[0] += 500.0
    return x_ND


@pytest.mark.parametrize("arch, default", [("relu", "mean"), ("topk", "median"),
                                           ("batchtopk", "median"), ("matryoshka", "median"),
                                           ("jumprelu", "zero")])
def test_each_architecture_resolves_its_default(arch, default):
    assert SAEConfig(arch, d_in=8, n_features=16, k=2).b_dec_init == default


def test_an_unknown_init_is_refused():
    with pytest.raises(UserError, match="b_dec_init must be one of zero, mean, median"):
        SAEConfig("relu", d_in=8, n_features=16, b_dec_init="pca")


def test_relu_starts_at_the_mean_with_the_encoder_seeing_centred_rows():
    x_ND = shifted_rows()
    sae = create_sae(SAEConfig("relu", d_in=8, n_features=16))
    W_enc_DF = sae.W_enc.detach().clone()
    sae.init_from_data(x_ND)
    assert torch.allclose(sae.b_dec, x_ND.double().mean(0).float())
    # No pre-encoder subtraction in relu: b_enc makes the initial pre-activations those of
    # x - b_dec with zero biases.
    assert torch.allclose(sae.pre_acts(x_ND), (x_ND - sae.b_dec) @ W_enc_DF, atol=1e-4)


def test_zero_leaves_the_papers_init():
    sae = create_sae(SAEConfig("relu", d_in=8, n_features=16, b_dec_init="zero"))
    sae.init_from_data(shifted_rows())
    assert torch.count_nonzero(sae.b_dec) == 0 and torch.count_nonzero(sae.b_enc) == 0


def test_a_subtracting_sae_keeps_b_enc_at_zero():
    x_ND = shifted_rows()
    relu = create_sae(SAEConfig("relu", d_in=8, n_features=16, apply_b_dec_to_input=True))
    relu.init_from_data(x_ND)
    topk = create_sae(SAEConfig("topk", d_in=8, n_features=16, k=2))
    topk.init_from_data(x_ND)
    assert torch.count_nonzero(relu.b_enc) == 0 and torch.count_nonzero(topk.b_enc) == 0
    assert torch.allclose(topk.b_dec, geometric_median(x_ND).float())
    assert (topk.b_dec - relu.b_dec).norm() > 1.0  # the outlier pulls the mean only


def test_a_transcoder_starts_at_its_targets_mean_and_keeps_b_enc():
    x_ND, y_ND = shifted_rows(d=8), shifted_rows(d=4) * 3
    tc = create_sae(SAEConfig("relu", d_in=8, d_out=4, n_features=16,
                              apply_b_dec_to_input=False))
    tc.init_from_data(x_ND, y_ND)
    assert torch.allclose(tc.b_dec, y_ND.double().mean(0).float())
    assert torch.count_nonzero(tc.b_enc) == 0


def test_resuming_ignores_the_init_but_not_the_other_options():
    def saved(**sae):
        return to_dict(TrainConfig(out="r", store="s", steps=1, sae=SAEConfig("relu", **sae)))

    assert changed_fields(saved(b_dec_init="zero"), saved()) == {}
    assert set(changed_fields(saved(b_dec_init="zero"), saved(l1_coefficient=1.0))) == {
        "sae.l1_coefficient"}
