"""Gradients reach what they should: sparse decode = dense, unit-norm projection, AuxK, JumpReLU."""

import pytest
import torch

from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.topk import geometric_median


def _grads(sae):
    return {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_sparse_decode_gradients_equal_dense(arch):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(arch, d_in=6, n_features=40, k=4)).train()
    x = torch.randn(16, 6)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(6))
    out = sae(x)
    out.loss.backward()
    sparse = _grads(sae)
    sae.zero_grad()
    # Dense reference: same selected codes, recomputed through f_BF @ W_dec.
    z = sae.pre_acts(x)
    mask = (out.f_BF != 0).detach()
    f_dense = torch.relu(z) * mask
    x_hat = f_dense @ sae.W_dec + sae.b_dec
    ((x - x_hat).pow(2).sum(1).mean()).backward()
    dense = _grads(sae)
    assert torch.allclose(out.x_hat_BD, x_hat, atol=1e-5)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.allclose(sparse[name], dense[name], atol=1e-5), name
    assert dense["W_dec"].abs().sum() > 0


def test_topk_projection_removes_parallel_component_and_renorm():
    torch.manual_seed(0)
    sae = create_sae(SAEConfig("topk", d_in=6, n_features=20, k=3))
    sae(torch.randn(8, 6)).loss.backward()
    before = sae.W_dec.grad.clone()
    sae.before_optimizer_step()
    g, w = sae.W_dec.grad, sae.W_dec.detach()
    assert (g * w).sum(1).abs().max() < 1e-6
    parallel = (before * w).sum(1, keepdim=True) * w
    assert torch.allclose(g, before - parallel, atol=1e-6)
    assert parallel.abs().max() > 1e-4  # there was something to remove
    with torch.no_grad():
        sae.W_dec.mul_(1.7)
    sae.after_optimizer_step()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(20), atol=1e-6)


def test_relu_decoder_norms_stay_free():
    sae = create_sae(SAEConfig("relu", d_in=6, n_features=20))
    sae(torch.randn(8, 6)).loss.backward()
    before = sae.W_dec.grad.clone()
    sae.before_optimizer_step()
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.after_optimizer_step()
    assert torch.equal(sae.W_dec.grad, before)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.full((20,), 0.3), atol=1e-6)


def test_auxk_gradient_reaches_only_dead_latents():
    torch.manual_seed(0)
    sae = create_sae(SAEConfig("topk", d_in=8, n_features=32, k=2, aux_k=4))
    dead = torch.zeros(32, dtype=torch.bool)
    dead[:10] = True
    with torch.no_grad():
        sae.b_enc[:10] = 5.0  # dead latents have positive pre-activations
    x = torch.randn(16, 8)
    out = sae(x, dead_mask_F=dead)
    out.losses["aux"].backward()
    assert sae.W_enc.grad[:, ~dead].abs().max() == 0
    assert sae.W_dec.grad[~dead].abs().max() == 0
    assert sae.W_enc.grad[:, dead].abs().sum() > 0
    assert sae.W_dec.grad[dead].abs().sum() > 0


def test_jumprelu_threshold_gradient_is_the_pseudo_derivative():
    cfg = SAEConfig("jumprelu", d_in=2, n_features=2, l0_coefficient=3.0,
                    jumprelu_bandwidth=0.5, jumprelu_init_threshold=1.0)
    sae = create_sae(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.eye(2))
    # feature 0: z = 1.1 and 0.8 -> both inside |z - 1| < 0.25; feature 1: z = 5, -3 -> outside.
    x = torch.tensor([[1.1, 5.0], [0.8, -3.0]])
    sae(x).losses["l0"].backward()
    # d/dθ [λ/B Σ_b H(z_b − θ)] = λ/B Σ_b −(1/ε) K; d/dlogθ = θ · that.
    expected0 = 1.0 * 3.0 / 2 * (-(1 / 0.5) * 2)
    assert sae.log_threshold.grad[0].item() == pytest.approx(expected0)
    assert sae.log_threshold.grad[1].item() == 0.0
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().max() == 0  # H has no z-gradient


def test_jumprelu_reconstruction_gradient_on_threshold():
    cfg = SAEConfig("jumprelu", d_in=1, n_features=1, jumprelu_bandwidth=0.5,
                    jumprelu_init_threshold=1.0)
    sae = create_sae(cfg)
    with torch.no_grad():
        sae.W_enc.fill_(1.0)
        sae.W_dec.fill_(1.0)
    x = torch.tensor([[1.1]])  # z = 1.1 > θ = 1: f = 1.1, x̂ = 1.1, so mse grad is 0 here
    out = sae(x + 0.0)
    assert out.f_BF.item() == pytest.approx(1.1)
    sae.zero_grad()
    x_hat_grad = torch.tensor([[2.0]])
    out.f_BF.backward(x_hat_grad)
    # ∂f/∂θ = −(θ/ε)K = −2; chain through θ = exp(logθ) multiplies by θ = 1.
    assert sae.log_threshold.grad.item() == pytest.approx(2.0 * -2.0)
    assert sae.W_enc.grad.item() == pytest.approx(2.0 * 1.1)  # ∂f/∂z = H = 1, z = W·x


def test_geometric_median_is_robust_to_outliers():
    torch.manual_seed(0)
    pts = torch.cat([torch.randn(40, 3), torch.full((3, 3), 1000.0)])
    med = geometric_median(pts)
    assert med.norm() < 1.0 and pts.mean(0).norm() > 100
    # Weiszfeld optimum: the gradient of Σ‖x − y‖, a sum of unit vectors, vanishes.
    unit = (pts.double() - med) / (pts.double() - med).norm(dim=1, keepdim=True)
    assert unit.sum(0).norm() < 1e-4 * len(pts)


def test_topk_init_from_data_sets_b_dec_to_median():
    sae = create_sae(SAEConfig("topk", d_in=3, n_features=8, k=2))
    x = torch.randn(50, 3) + torch.tensor([5.0, -2.0, 1.0])
    sae.init_from_data(x)
    assert torch.allclose(sae.b_dec, geometric_median(x).float())
