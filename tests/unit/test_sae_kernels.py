"""The sparse training paths give exactly the dense autograd loss and gradients (float64)."""

import pytest
import torch

from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.kernels import SparseCodes, sampled_pre_acts

PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _grads(sae):
    grads = {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}
    sae.zero_grad(set_to_none=True)
    return grads


def _randomise(sae, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


@pytest.mark.parametrize("centre", [False, True])
def test_sampled_encoder_gradients_equal_dense(centre):
    torch.manual_seed(0)
    B, D, F = 5, 4, 7
    x = torch.randn(B, D, dtype=torch.float64, requires_grad=True)
    W = torch.randn(D, F, dtype=torch.float64, requires_grad=True)
    b_enc = torch.randn(F, dtype=torch.float64, requires_grad=True)
    b_dec = torch.randn(D, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(B, F) < 0.4
    keep[2] = False  # a row with no pick
    keep[:, 3] = True  # a feature picked by every row
    keep[:, 5] = False  # a feature never picked
    row, idx = keep.nonzero(as_tuple=True)
    weight = torch.randn(row.numel(), dtype=torch.float64)

    z_dense = ((x - b_dec) if centre else x) @ W + b_enc
    (z_dense[row, idx] * weight).sum().backward()
    dense = [t.grad.clone() for t in (x, W, b_enc, b_dec) if t.grad is not None]
    for t in (x, W, b_enc, b_dec):
        t.grad = None

    z_N = z_dense.detach()[row, idx]
    picked = sampled_pre_acts(z_N, x, W, b_enc, b_dec if centre else None, row, idx)
    assert torch.equal(picked.detach(), z_N)
    (picked * weight).sum().backward()
    sparse = [t.grad for t in (x, W, b_enc, b_dec) if t.grad is not None]
    assert len(sparse) == len(dense) == (4 if centre else 3)
    for got, want in zip(sparse, dense):
        assert torch.allclose(got, want, atol=1e-12)
    assert W.grad[:, 5].abs().max() == 0 and W.grad[:, 3].abs().max() > 0


@pytest.mark.parametrize("centre", [False, True])
def test_relu_sparse_path_equals_dense_path(centre):
    sae = create_sae(SAEConfig("relu", d_in=6, n_features=24,
                               apply_b_dec_to_input=centre)).double()
    _randomise(sae)
    x = torch.randn(9, 6, dtype=torch.float64)
    outs, grads = {}, {}
    for sparse in (False, True):
        out = sae(x, l1_scale=0.7, sparse=sparse)
        out.loss.backward()
        outs[sparse], grads[sparse] = out, _grads(sae)
    dense, sparse = outs[False], outs[True]
    assert sparse.codes is not None and dense.codes is None
    assert 0 < torch.count_nonzero(dense.f_BF) < dense.f_BF.numel()  # both regimes present
    assert torch.allclose(sparse.f_BF, dense.f_BF, atol=1e-12)
    assert torch.allclose(sparse.x_hat_BD, dense.x_hat_BD, atol=1e-12)
    for name in ("mse", "l1"):  # the loss terms are summed in float32 by design
        assert sparse.losses[name].item() == pytest.approx(dense.losses[name].item(), rel=1e-6)
    assert torch.equal(sparse.fires_F(), dense.fires_F())
    for name in PARAMS:
        if name == "b_dec" or name in grads[False]:
            assert torch.allclose(grads[True][name], grads[False][name], atol=1e-10), name


def test_relu_picks_the_path_by_density():
    sae = create_sae(SAEConfig("relu", d_in=8, n_features=64))
    x = torch.randn(32, 8)
    assert sae(x).codes is None  # at initialisation about half the codes are active
    with torch.no_grad():  # keep only the largest 2% of the pre-activations positive
        sae.b_enc.fill_(-torch.quantile(sae.pre_acts(x), 0.98).item())
    f = sae.encode(x)
    assert 0 < torch.count_nonzero(f) <= 0.05 * f.numel()
    first, second = sae(x), sae(x)  # the second starts from the "was sparse" hint
    assert first.codes is not None and second.codes is not None
    assert torch.equal(first.x_hat_BD, second.x_hat_BD)
    assert torch.allclose(first.loss, sae(x, sparse=False).loss, rtol=1e-6)
    with torch.no_grad():
        sae.b_enc.zero_()  # dense again: the hint is wrong once, the result still dense
    assert sae(x).codes is None
    assert torch.allclose(sae(x).loss, sae(x, sparse=False).loss, rtol=1e-6)


def test_topk_auxk_gradients_equal_dense_reference():
    cfg = SAEConfig("topk", d_in=6, n_features=30, k=3, aux_k=4)
    sae = create_sae(cfg).double()
    _randomise(sae, seed=1)
    x = torch.randn(10, 6, dtype=torch.float64)
    dead = torch.zeros(30, dtype=torch.bool)
    dead[::3] = True
    out = sae(x, dead_mask_F=dead)
    out.loss.backward()
    sparse = _grads(sae)

    # Dense reference: the same loss through a differentiable dense z and masked codes.
    z = sae.pre_acts(x)
    mask = out.f_BF.detach() != 0
    x_hat = (torch.relu(z) * mask) @ sae.W_dec + sae.b_dec
    mse = (x - x_hat).pow(2).sum(1).mean()
    z_dead = z.masked_fill(~dead, float("-inf"))
    _, idx = torch.topk(z_dead, 4, dim=-1)
    aux_mask = torch.zeros_like(mask).scatter(1, idx, True)
    e_hat = (torch.relu(z) * aux_mask) @ sae.W_dec
    e = (x - x_hat).detach()
    x_var = (x - x.mean(0)).pow(2).sum() / x.shape[0]
    aux = cfg.aux_coefficient * (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum() * x_var
    # AuxK is computed in float32 by design, hence the float32 tolerances.
    assert out.losses["aux"].item() == pytest.approx(aux.item(), rel=1e-6)
    (mse + aux).backward()
    dense = _grads(sae)
    for name in PARAMS:
        assert torch.allclose(sparse[name], dense[name], rtol=1e-5, atol=1e-7), name
    assert sparse["W_enc"][:, dead].abs().sum() > 0


def test_batchtopk_eval_codes_are_the_threshold_codes():
    sae = create_sae(SAEConfig("batchtopk", d_in=6, n_features=20, k=3)).double()
    _randomise(sae, seed=2)
    x = torch.randn(12, 6, dtype=torch.float64)
    sae.train()(x)  # sets the threshold
    sae.eval()
    out = sae(x)
    assert out.codes is not None
    assert torch.allclose(out.f_BF, sae.encode(x), atol=1e-12)
    assert torch.allclose(out.x_hat_BD, sae.decode(sae.encode(x)), atol=1e-12)
    out.loss.backward()
    sparse = _grads(sae)
    sae.mse(x, sae.decode(sae.encode(x))).backward()
    dense = _grads(sae)
    for name in PARAMS:
        assert torch.allclose(sparse[name], dense[name], atol=1e-10), name


def test_sparse_codes_dense_and_fire_counts():
    codes = SparseCodes(row_N=torch.tensor([0, 0, 2]), idx_N=torch.tensor([1, 3, 1]),
                        vals_N=torch.tensor([2.0, 0.0, 5.0]), n_rows=3, n_features=4)
    f = codes.dense()
    assert torch.equal(f, torch.tensor([[0, 2.0, 0, 0], [0, 0, 0, 0], [0, 5.0, 0, 0]]))
    # A listed zero (a top-k pick whose pre-activation was negative) does not fire.
    assert torch.equal(codes.fires_F(), torch.tensor([0, 2, 0, 0]))
    W_dec = torch.randn(4, 2)
    assert torch.allclose(codes.decode(W_dec), f @ W_dec)
