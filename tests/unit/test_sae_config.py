"""SAEConfig validation and initialisation properties."""

import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.factory import SAE_CLASSES


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(architecture="topk", d_in=8, n_features=16, k=17), ["k = 17", "n_features"]),
        (dict(architecture="batchtopk", d_in=8, n_features=16, k=0), ["k = 0"]),
        (dict(architecture="relu", d_in=8, n_features=16, l1_coefficient=-1.0),
         ["l1_coefficient", ">= 0"]),
        (dict(architecture="relu", d_in=0, n_features=16), ["d_in", "positive"]),
        (dict(architecture="relu", d_in=-3, n_features=16), ["d_in"]),
        (dict(architecture="relu", d_in=8, n_features=0), ["n_features"]),
        (dict(architecture="gated", d_in=8, n_features=16), ["unknown", "relu, topk"]),
        (dict(architecture="jumprelu", d_in=8, n_features=16, jumprelu_bandwidth=0.0),
         ["jumprelu_bandwidth"]),
        (dict(architecture="topk", d_in=8, n_features=16, k=4, decoder_init_norm=0.1),
         ["unit-norm", "decoder_init_norm"]),
        (dict(architecture="topk", d_in=8, n_features=16, k=4, aux_coefficient=-0.5),
         ["aux_coefficient"]),
    ],
)
def test_bad_configs_raise_user_error(kwargs, words):
    with pytest.raises(UserError) as err:
        SAEConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_k_is_ignored_for_relu_and_defaults_resolve():
    cfg = SAEConfig("relu", d_in=8, n_features=4, k=100)  # the trainer always passes k
    assert cfg.decoder_init_norm == 0.1 and cfg.apply_b_dec_to_input is False
    topk = SAEConfig("topk", d_in=8, n_features=64, k=4)
    assert topk.decoder_init_norm == 1.0 and topk.apply_b_dec_to_input is True
    assert topk.resolved_aux_k == 4  # d_in // 2


def test_relu_init():
    torch.manual_seed(0)
    sae = create_sae(SAEConfig("relu", d_in=16, n_features=64))
    assert torch.count_nonzero(sae.b_enc) == 0 and torch.count_nonzero(sae.b_dec) == 0
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.full((64,), 0.1), atol=1e-6)
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert sae.W_enc.shape == (16, 64) and sae.W_dec.shape == (64, 16)
    assert sae.W_enc_DF is sae.W_enc and sae.W_dec_FD is sae.W_dec
    # random directions: rows are not all alike
    cos = sae.W_dec @ sae.W_dec.T / 0.01
    assert cos.fill_diagonal_(0).abs().max() < 0.99


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "matryoshka"])
def test_unit_norm_init(arch):
    sae = create_sae(SAEConfig(arch, d_in=16, n_features=64, k=4))
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-6)
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert torch.count_nonzero(sae.b_enc) == 0


def test_jumprelu_init_threshold():
    sae = create_sae(SAEConfig("jumprelu", d_in=4, n_features=8, jumprelu_init_threshold=0.3))
    assert torch.allclose(sae.threshold, torch.full((8,), 0.3))


def test_the_registry_classes_declare_their_behaviour():
    for name, cls in SAE_CLASSES.items():
        cfg = SAEConfig(name, d_in=8, n_features=64, k=4)
        sae = create_sae(cfg)
        assert type(sae) is cls and cls.default_lr(cfg) > 0
        assert cfg.apply_b_dec_to_input is cls.default_apply_b_dec_to_input
        assert cfg.decoder_init_norm == (1.0 if cls.unit_norm_decoder else 0.1)
    uses = {name: (c.uses_k, c.needs_dead_mask, c.unit_norm_decoder, c.sparsity_coefficient_field)
            for name, c in SAE_CLASSES.items()}
    assert uses == {"relu": (False, False, False, "l1_coefficient"),
                    "topk": (True, True, True, None), "batchtopk": (True, True, True, None),
                    "jumprelu": (False, False, True, "l0_coefficient"),
                    "matryoshka": (True, True, True, None)}
    assert [n for n, c in SAE_CLASSES.items() if not c.supports_feature_parallel] == [
        "matryoshka"]
    relu = create_sae(SAEConfig("relu", d_in=8, n_features=16, l1_coefficient=2.5))
    assert relu.sparsity_coefficient() == 2.5
    assert create_sae(SAEConfig("topk", d_in=8, n_features=16, k=2)).sparsity_coefficient() == 0


def test_a_new_architecture_is_one_class_and_one_registry_entry(monkeypatch):
    from monosemantic.sae.relu import ReluSAE
    from monosemantic.train.config import TrainConfig, resolve

    class WideReluSAE(ReluSAE):
        unit_norm_decoder = True

        @classmethod
        def default_lr(cls, cfg):
            return 1e-3

    monkeypatch.setitem(SAE_CLASSES, "wide", WideReluSAE)
    cfg = SAEConfig("wide", d_in=8, n_features=16)
    assert cfg.decoder_init_norm == 1.0 and isinstance(create_sae(cfg), WideReluSAE)
    train_cfg = resolve(TrainConfig(out="r", store="s", sae=SAEConfig("wide"), steps=1), None)
    assert train_cfg.lr == 1e-3


def test_d_in_may_wait_for_the_data_but_an_sae_needs_it():
    cfg = SAEConfig("topk", n_features=64, k=4)  # as the trainer's config holds it
    assert cfg.d_in is None
    with pytest.raises(UserError, match="d_in is not set"):
        create_sae(cfg)
