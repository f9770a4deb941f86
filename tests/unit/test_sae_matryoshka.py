"""matryoshka: batchtopk codes, loss = mean over nested prefixes of their reconstruction MSE."""

import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae

PREFIXES = (1, 3, 6)


def _pair(seed=0, **options):
    """A matryoshka SAE and a batchtopk SAE with the very same parameters."""
    torch.manual_seed(seed)
    mat = create_sae(SAEConfig("matryoshka", d_in=4, n_features=6, k=2,
                               matryoshka_prefixes=PREFIXES, **options))
    ref = create_sae(SAEConfig("batchtopk", d_in=4, n_features=6, k=2, **options))
    with torch.no_grad():
        mat.b_dec.copy_(torch.randn(4))
        mat.b_enc.copy_(torch.rand(6))
        ref.load_state_dict(mat.state_dict())
    return mat.train(), ref.train()


def _brute_prefix_mse(sae, x, f):
    """(1/G) Σ_g ‖x − (b_dec + Σ_{i < m_g} f_i·W_dec[i])‖², averaged over rows, from dense f."""
    terms = []
    for m in PREFIXES:
        x_hat = sae.b_dec + f[:, :m] @ sae.W_dec[:m]
        terms.append((x - x_hat).pow(2).sum(1).mean())
    return torch.stack(terms).mean()


def test_loss_is_the_mean_over_prefixes_of_their_reconstruction():
    mat, ref = _pair()
    x = torch.randn(8, 4)
    out, ref_out = mat(x), ref(x)
    # Codes and the full reconstruction are batchtopk's.
    assert torch.equal(out.f_BF, ref_out.f_BF) and torch.count_nonzero(out.f_BF) == 16
    assert torch.allclose(out.x_hat_BD, ref_out.x_hat_BD, atol=1e-6)
    assert out.losses["mse"].item() == pytest.approx(ref_out.losses["mse"].item(), rel=1e-6)
    expected = _brute_prefix_mse(mat, x, out.f_BF.detach())
    assert out.losses["prefix_mse"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)  # no dead mask: no aux
    # The prefixes matter: the mean differs from the full dictionary's MSE.
    assert abs(expected.item() - out.losses["mse"].item()) > 1e-3
    # AuxK as batchtopk's, on top of the prefix term.
    dead = torch.tensor([True, False, True, False, True, True])
    out, ref_out = mat(x, dead_mask_F=dead), ref(x, dead_mask_F=dead)
    assert out.losses["aux"].item() == pytest.approx(ref_out.losses["aux"].item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.losses["prefix_mse"].item()
                                            + out.losses["aux"].item(), rel=1e-5)


def test_gradients_equal_the_dense_brute_force_and_reach_every_feature():
    mat, _ = _pair(apply_b_dec_to_input=False)
    with torch.no_grad():
        mat.b_enc.fill_(5.0)  # every pre-activation positive: 3·4 = 12 codes over 6 features
    torch.manual_seed(1)
    x = torch.randn(6, 4)
    out = mat(x)
    out.loss.backward()
    sparse = {n: p.grad.clone() for n, p in mat.named_parameters()}
    mat.zero_grad()
    mask = (out.f_BF != 0).detach()
    assert mask.any(0).all()  # every feature fires in some row
    f_dense = torch.relu(mat.pre_acts(x)) * mask
    _brute_prefix_mse(mat, x, f_dense).backward()
    for name, p in mat.named_parameters():
        assert torch.allclose(sparse[name], p.grad, atol=1e-5), name
    assert (sparse["W_dec"].norm(dim=1) > 0).all() and (sparse["W_enc"].norm(dim=0) > 0).all()


def test_default_prefixes_halve_down_to_a_sixteenth():
    assert SAEConfig("matryoshka", n_features=64).resolved_matryoshka_prefixes == (
        4, 8, 16, 32, 64)
    assert SAEConfig("matryoshka", n_features=6, k=2).resolved_matryoshka_prefixes == (
        1, 3, 6)
    assert SAEConfig("matryoshka", n_features=64,
                     matryoshka_prefixes=(10, 64)).resolved_matryoshka_prefixes == (10, 64)


@pytest.mark.parametrize("prefixes, words", [
    ((4, 4, 64), ["strictly increasing"]),
    ((8, 4, 64), ["strictly increasing"]),
    ((4, 32), ["last", "n_features = 64"]),
    ((0, 64), ["positive"]),
    ((4, 128), ["last", "n_features = 64"]),
])
def test_bad_prefixes_raise_user_error(prefixes, words):
    with pytest.raises(UserError) as err:
        SAEConfig("matryoshka", d_in=8, n_features=64, k=4, matryoshka_prefixes=prefixes)
    for word in words:
        assert word in str(err.value)


def test_an_sae_with_a_single_prefix_is_batchtopk():
    torch.manual_seed(0)
    mat = create_sae(SAEConfig("matryoshka", d_in=4, n_features=8, k=2,
                               matryoshka_prefixes=(8,))).train()
    out = mat(torch.randn(16, 4))
    assert out.losses["prefix_mse"].item() == pytest.approx(out.losses["mse"].item(), rel=1e-6)
