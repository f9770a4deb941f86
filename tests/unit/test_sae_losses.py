"""Each architecture's forward and loss equal the written formula on hand-made tiny tensors."""

import math

import pytest
import torch

from monosemantic.sae import SAEConfig, create_sae


def _set(sae, W_enc, b_enc, W_dec, b_dec):
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor(W_enc, dtype=torch.float32))
        sae.b_enc.copy_(torch.tensor(b_enc, dtype=torch.float32))
        sae.W_dec.copy_(torch.tensor(W_dec, dtype=torch.float32))
        sae.b_dec.copy_(torch.tensor(b_dec, dtype=torch.float32))


# d = 2, F = 3
W_ENC = [[1.0, -1.0, 0.5], [2.0, 0.0, -1.0]]
B_ENC = [0.0, 0.5, -0.25]
W_DEC = [[2.0, 0.0], [0.0, 0.5], [3.0, 4.0]]  # row norms 2, 0.5, 5
B_DEC = [0.1, -0.2]
X = [[1.0, 1.0], [-1.0, 0.5]]


def test_relu_loss_is_mse_plus_decoder_weighted_l1():
    sae = create_sae(SAEConfig("relu", d_in=2, n_features=3, l1_coefficient=5.0))
    _set(sae, W_ENC, B_ENC, W_DEC, B_DEC)
    out = sae(torch.tensor(X), l1_scale=0.5)
    # z row 0: [1+2, -1+0.5, 0.5-1-0.25] = [3, -0.5, -0.75] -> f = [3, 0, 0]
    # z row 1: [-1+1, 1+0.5, -0.5-0.5-0.25] = [0, 1.5, -1.25] -> f = [0, 1.5, 0]
    f = [[3.0, 0.0, 0.0], [0.0, 1.5, 0.0]]
    assert torch.allclose(out.f_BF, torch.tensor(f))
    x_hat = [[0.1 + 6.0, -0.2], [0.1, -0.2 + 0.75]]
    assert torch.allclose(out.x_hat_BD, torch.tensor(x_hat))
    mse = ((1 - 6.1) ** 2 + (1 + 0.2) ** 2 + (-1 - 0.1) ** 2 + (0.5 - 0.55) ** 2) / 2
    l1 = 5.0 * 0.5 * ((3.0 * 2.0) + (1.5 * 0.5)) / 2
    assert out.losses["mse"].item() == pytest.approx(mse, rel=1e-6)
    assert out.losses["l1"].item() == pytest.approx(l1, rel=1e-6)
    assert out.loss.item() == pytest.approx(mse + l1, rel=1e-6)


def test_topk_keeps_k_largest_and_relu_then_mse():
    sae = create_sae(SAEConfig("topk", d_in=2, n_features=3, k=1, apply_b_dec_to_input=False))
    _set(sae, W_ENC, B_ENC, W_DEC, B_DEC)
    out = sae(torch.tensor(X))
    # z row 0 = [3, -0.5, -0.75] -> keep 3 ; row 1 = [0, 1.5, -1.25] -> keep 1.5
    assert torch.allclose(out.f_BF, torch.tensor([[3.0, 0, 0], [0, 1.5, 0]]))
    mse = ((1 - 6.1) ** 2 + 1.2**2 + 1.1**2 + 0.05**2) / 2
    assert out.losses["mse"].item() == pytest.approx(mse, rel=1e-6)
    assert out.losses["aux"].item() == 0.0
    assert out.loss.item() == pytest.approx(mse, rel=1e-6)


def test_topk_subtracts_b_dec_before_encoding_by_default():
    sae = create_sae(SAEConfig("topk", d_in=2, n_features=3, k=3))
    _set(sae, W_ENC, [0.0, 0.0, 0.0], W_DEC, [1.0, 1.0])
    f = sae.encode(torch.tensor([[1.0, 1.0]]))
    assert torch.count_nonzero(f) == 0  # x − b_dec = 0


def test_topk_negative_kept_values_become_zero():
    sae = create_sae(SAEConfig("topk", d_in=2, n_features=3, k=2, apply_b_dec_to_input=False))
    _set(sae, W_ENC, B_ENC, W_DEC, B_DEC)
    f = sae.encode(torch.tensor([X[0]]))  # z = [3, -0.5, -0.75]: top-2 = {3, -0.5}, ReLU
    assert torch.allclose(f, torch.tensor([[3.0, 0.0, 0.0]]))


def test_auxk_loss_formula():
    cfg = SAEConfig("topk", d_in=2, n_features=3, k=1, aux_k=1, aux_coefficient=0.25,
                    apply_b_dec_to_input=False)
    sae = create_sae(cfg)
    _set(sae, W_ENC, B_ENC, W_DEC, B_DEC)
    x = torch.tensor(X)
    dead = torch.tensor([False, False, True])
    out = sae(x, dead_mask_F=dead)
    # dead latent 2 only: z = [-0.75, -1.25] -> ReLU -> 0, so ê = 0.
    e = x - out.x_hat_BD.detach()
    e_var = (e - e.mean(0)).pow(2).sum()
    x_var = (x - x.mean(0)).pow(2).sum() / 2
    expected = 0.25 * e.pow(2).sum() / e_var * x_var
    assert out.losses["aux"].item() == pytest.approx(expected.item(), rel=1e-5)
    # Now make latent 1 the dead one: z[:,1] = [-0.5, 1.5] -> ê row 1 = 1.5·W_dec[1].
    out = sae(x, dead_mask_F=torch.tensor([False, True, False]))
    e_hat = torch.tensor([[0.0, 0.0], [0.0, 0.75]])
    expected = 0.25 * (e - e_hat).pow(2).sum() / e_var * x_var
    assert out.losses["aux"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.losses["mse"].item() + expected.item(), rel=1e-5)


def test_batchtopk_keeps_k_times_batch_over_the_whole_batch():
    sae = create_sae(SAEConfig("batchtopk", d_in=2, n_features=3, k=1,
                               apply_b_dec_to_input=False))
    _set(sae, W_ENC, B_ENC, W_DEC, B_DEC)
    x = torch.tensor([[1.0, 1.0], [-1.0, 0.5], [0.1, 0.0]])
    # relu(z): row0 [3,0,0], row1 [0,1.5,0], row2 [0.1,0.4,0] -> top 3 = 3, 1.5, 0.4
    out = sae.train()(x)
    assert torch.count_nonzero(out.f_BF) == 3
    assert torch.allclose(out.f_BF, torch.tensor([[3.0, 0, 0], [0, 1.5, 0], [0, 0.4, 0]]))
    assert torch.allclose(out.x_hat_BD, out.f_BF @ sae.W_dec + sae.b_dec)
    mse = (x - out.x_hat_BD).pow(2).sum(1).mean()
    assert out.losses["mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    # The first step sets the threshold to the smallest kept value; eval encodes by it.
    assert torch.allclose(sae.threshold, torch.full((3,), 0.4))
    f_eval = sae.eval().encode(x)
    assert torch.allclose(f_eval, torch.tensor([[3.0, 0, 0], [0, 1.5, 0], [0, 0, 0]]))


def test_batchtopk_threshold_is_a_running_mean():
    cfg = SAEConfig("batchtopk", d_in=4, n_features=16, k=2, batchtopk_threshold_rate=0.5)
    sae = create_sae(cfg).train()
    torch.manual_seed(0)
    mins = []
    for _ in range(3):
        out = sae(torch.randn(8, 4))
        mins.append(out.f_BF[out.f_BF > 0].min().item())
    expected = mins[0]
    for m in mins[1:]:
        expected = 0.5 * expected + 0.5 * m
    assert sae.threshold[0].item() == pytest.approx(expected, rel=1e-5)


def test_topk_keeps_exactly_k_per_row():
    sae = create_sae(SAEConfig("topk", d_in=8, n_features=64, k=5))
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so no ReLU zeros
    f = sae(torch.randn(32, 8)).f_BF
    assert (torch.count_nonzero(f, dim=1) == 5).all()


def test_batchtopk_exact_count_with_random_data():
    sae = create_sae(SAEConfig("batchtopk", d_in=8, n_features=64, k=5)).train()
    with torch.no_grad():
        sae.b_enc.fill_(10.0)
    f = sae(torch.randn(32, 8)).f_BF
    assert torch.count_nonzero(f) == 5 * 32
    assert torch.count_nonzero(f, dim=1).float().std() > 0  # rows differ: batch-level choice


def test_jumprelu_forward_and_l0_loss():
    cfg = SAEConfig("jumprelu", d_in=2, n_features=3, l0_coefficient=2.0,
                    jumprelu_init_threshold=1.0)
    sae = create_sae(cfg)
    _set(sae, W_ENC, B_ENC, W_DEC, B_DEC)
    with torch.no_grad():
        sae.log_threshold.copy_(torch.log(torch.tensor([1.0, 1.0, 0.1])))
    out = sae(torch.tensor(X), l1_scale=0.5)
    # z row0 [3, -0.5, -0.75] -> [3, 0, 0]; row1 [0, 1.5, -1.25] -> [0, 1.5, 0]
    assert torch.allclose(out.f_BF, torch.tensor([[3.0, 0, 0], [0, 1.5, 0]]))
    mse = ((1 - 6.1) ** 2 + 1.2**2 + 1.1**2 + 0.05**2) / 2
    assert out.losses["mse"].item() == pytest.approx(mse, rel=1e-6)
    assert out.losses["l0"].item() == pytest.approx(2.0 * 0.5 * (1 + 1) / 2)
    assert out.loss.item() == pytest.approx(mse + 1.0, rel=1e-6)


def test_jumprelu_threshold_stays_float32():
    sae = create_sae(SAEConfig("jumprelu", d_in=4, n_features=8)).to(torch.bfloat16)
    assert sae.log_threshold.dtype == torch.float32
    assert sae.W_enc.dtype == torch.bfloat16
    assert sae.threshold[0].item() == pytest.approx(0.01, rel=1e-6)
    assert math.isfinite(sae(torch.randn(3, 4, dtype=torch.bfloat16)).loss.item())
