"""Save-time folding, SAELens folder layout, round trips and foreign SAELens folders."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, create_sae, load_sae, save_sae
from monosemantic.sae.io import read_metadata

ARCHS = ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"]


def _trained_like(arch, seed=0):
    """An SAE with non-trivial biases, decoder norms and thresholds, as after training."""
    torch.manual_seed(seed)
    sae = create_sae(SAEConfig(arch, d_in=8, n_features=32, k=4))
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(32) * 0.1)
        sae.b_dec.copy_(torch.randn(8))
        if arch == "relu":
            sae.W_dec.mul_(torch.rand(32, 1) * 3 + 0.2)  # free decoder norms
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.log(torch.rand(32) * 0.3 + 0.05))
    if arch in ("batchtopk", "matryoshka"):
        sae.train()(torch.randn(64, 8) * 2)  # estimates the inference threshold
    return sae.eval()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_save_load_round_trip_reads_raw_activations(tmp_path, arch, scale):
    sae = _trained_like(arch)
    x_raw = torch.randn(20, 8) * 30
    with torch.no_grad():
        ref = sae.decode(sae.encode(scale * x_raw)) / scale
        f_ref = sae.encode(scale * x_raw)
    path = save_sae(sae, tmp_path / "sae", {"model": "tiny", "hook": "blocks.1.hook_resid_post"},
                    norm_scale=scale)
    loaded = load_sae(path)
    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg
    with torch.no_grad():
        f = loaded.encode(x_raw)
        got = loaded.decode(f)
    assert torch.allclose(got, ref, atol=1e-4 * ref.abs().max())
    assert torch.allclose(loaded.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    # Activations report f_i · ‖W_dec[i]‖ (in raw units: / s).
    norms = sae.W_dec.norm(dim=1).detach() / scale
    assert torch.allclose(f, f_ref * norms, atol=1e-4 * f.abs().max())
    assert torch.equal(f != 0, f_ref != 0)


def test_relu_fold_reports_decoder_weighted_activations(tmp_path):
    sae = _trained_like("relu")
    x = torch.randn(10, 8)
    with torch.no_grad():
        expected = sae.encode(x) * sae.W_dec.norm(dim=1)
    loaded = load_sae(save_sae(sae, tmp_path / "sae"))
    with torch.no_grad():
        assert torch.allclose(loaded.encode(x), expected, atol=1e-5)
    # The module being saved is not modified.
    assert not torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32))


def test_folder_layout_and_metadata(tmp_path):
    sae = _trained_like("topk")
    extra = {"model": "gemma-3-270m", "hook": "blocks.6.hook_resid_post", "store": tmp_path,
             "holdout_rows": [900, 1000], "summary": {"steps": 10}}
    path = save_sae(sae, tmp_path / "run" / "sae", extra, norm_scale=0.5)
    assert sorted(p.name for p in path.iterdir()) == [
        "cfg.json", "monosemantic.json", "sae_weights.safetensors"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4
    assert cfg["d_in"] == 8 and cfg["d_sae"] == 32 and cfg["dtype"] == "float32"
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["rescale_acts_by_decoder_norm"] is False
    assert cfg["metadata"]["model_name"] == "gemma-3-270m"
    assert cfg["metadata"]["hook_name"] == "blocks.6.hook_resid_post"
    assert cfg["metadata"]["sae_lens_version"] >= "6"
    weights = load_file(str(path / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "W_enc": (8, 32), "b_enc": (32,), "W_dec": (32, 8), "b_dec": (8,)}
    meta = read_metadata(path)
    assert meta["norm_scale_folded"] == 0.5 and meta["architecture"] == "topk"
    assert meta["extra_metadata"]["holdout_rows"] == [900, 1000]
    assert meta["extra_metadata"]["store"] == str(tmp_path)


@pytest.mark.parametrize("arch, saelens_arch", [("relu", "standard"), ("jumprelu", "jumprelu"),
                                                ("batchtopk", "jumprelu"),
                                                ("matryoshka", "jumprelu")])
def test_saelens_architecture_names(tmp_path, arch, saelens_arch):
    path = save_sae(_trained_like(arch), tmp_path / "sae")
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["architecture"] == saelens_arch
    keys = set(load_file(str(path / "sae_weights.safetensors")))
    assert ("threshold" in keys) == (saelens_arch == "jumprelu")


def test_save_replaces_earlier_sae_but_not_other_folders(tmp_path):
    path = save_sae(_trained_like("relu", seed=0), tmp_path / "sae")
    save_sae(_trained_like("relu", seed=1), path)
    again = load_sae(path)
    assert torch.allclose(again.b_dec, _trained_like("relu", seed=1).b_dec)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="no saved SAE"):
        save_sae(_trained_like("relu"), other)
    assert (other / "keep.txt").read_text() == "mine"


def test_load_missing_folder_says_what_is_expected(tmp_path):
    with pytest.raises(UserError, match="cfg.json"):
        load_sae(tmp_path / "nothing")


def _write_foreign(path, cfg, tensors):
    path.mkdir()
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(path / "sae_weights.safetensors"))


def _tensors(d=6, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d, n, generator=g), "b_enc": torch.randn(n, generator=g),
            "W_dec": torch.randn(n, d, generator=g), "b_dec": torch.randn(d, generator=g)}


def test_load_foreign_saelens_standard(tmp_path):
    t = _tensors()
    _write_foreign(tmp_path / "s", {"architecture": "standard", "d_in": 6, "d_sae": 10,
                                    "dtype": "float32", "apply_b_dec_to_input": True,
                                    "normalize_activations": "none",
                                    "metadata": {"sae_lens_version": "6.5.0"}}, t)
    sae = load_sae(tmp_path / "s")
    x = torch.randn(4, 6)
    f = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), f, atol=1e-5)
        assert torch.allclose(sae.decode(f), f @ t["W_dec"] + t["b_dec"], atol=1e-5)
    assert sae.cfg.architecture == "relu" and read_metadata(tmp_path / "s") == {}


def test_load_foreign_topk_with_decoder_norm_rescaling(tmp_path):
    t = _tensors()
    _write_foreign(tmp_path / "t", {"architecture": "topk", "d_in": 6, "d_sae": 10, "k": 3,
                                    "rescale_acts_by_decoder_norm": True,
                                    "apply_b_dec_to_input": False,
                                    "metadata": {"sae_lens_version": "6.5.0"}}, t)
    sae = load_sae(tmp_path / "t")
    x = torch.randn(5, 6)
    norms = t["W_dec"].norm(dim=1)
    hidden = (x @ t["W_enc"] + t["b_enc"]) * norms  # SAELens: TopK on z·‖W_dec‖
    vals, idx = hidden.topk(3, dim=-1)
    acts = torch.zeros_like(hidden).scatter(1, idx, vals.relu())
    expected = (acts / norms) @ t["W_dec"] + t["b_dec"]
    with torch.no_grad():
        assert torch.allclose(sae.decode(sae.encode(x)), expected, atol=1e-4)


def test_load_foreign_jumprelu_and_rejections(tmp_path):
    t = _tensors()
    t["threshold"] = torch.rand(10)
    _write_foreign(tmp_path / "j", {"architecture": "jumprelu", "d_in": 6, "d_sae": 10,
                                    "apply_b_dec_to_input": False,
                                    "metadata": {"sae_lens_version": "6.5.0"}}, t)
    sae = load_sae(tmp_path / "j")
    x = torch.randn(5, 6)
    z = x @ t["W_enc"] + t["b_enc"]
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), z.relu() * (z > t["threshold"]), atol=1e-5)
    _write_foreign(tmp_path / "ln", {"architecture": "standard", "d_in": 6, "d_sae": 10,
                                     "normalize_activations": "layer_norm"}, _tensors())
    with pytest.raises(UserError, match="layer_norm"):
        load_sae(tmp_path / "ln")
    _write_foreign(tmp_path / "g", {"architecture": "gated", "d_in": 6, "d_sae": 10},
                   _tensors())
    with pytest.raises(UserError, match="gated"):
        load_sae(tmp_path / "g")


def test_load_foreign_topk_reads_k_from_either_saelens_layout(tmp_path):
    new = {"architecture": "topk", "d_in": 6, "d_sae": 10, "k": 3}
    old = {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}, "d_in": 6,
           "d_sae": 10}  # before SAELens 6
    _write_foreign(tmp_path / "new", new, _tensors())
    _write_foreign(tmp_path / "old", old, _tensors())
    assert load_sae(tmp_path / "new").cfg.k == 3
    assert load_sae(tmp_path / "old").cfg.k == 4


@pytest.mark.parametrize("cfg", [
    {"architecture": "topk", "d_in": 6, "d_sae": 10},
    {"activation_fn_str": "topk", "activation_fn_kwargs": {}, "d_in": 6, "d_sae": 10},
])
def test_load_foreign_topk_without_k_is_refused(tmp_path, cfg):
    _write_foreign(tmp_path / "nok", cfg, _tensors())
    with pytest.raises(UserError, match=r"nok: its cfg.json describes a topk SAE but gives no "
                                        r"k .*activation_fn_kwargs.k"):
        load_sae(tmp_path / "nok")


def test_load_refuses_a_jumprelu_without_its_threshold(tmp_path):
    _write_foreign(tmp_path / "j", {"architecture": "jumprelu", "d_in": 6, "d_sae": 10},
                   _tensors())
    with pytest.raises(UserError, match=r"lacks tensors \['threshold'\]"):
        load_sae(tmp_path / "j")
