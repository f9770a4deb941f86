"""Spliced-in loss on tiny random models: identity / zero SAEs pin the formula's ends, and an
independent hook-and-cross-entropy computation pins a case in between."""

import math

import pytest
import torch

from helpers.tiny import tiny_model
from monosemantic.evals.spliced import spliced_loss
from monosemantic.models import LoadedModel

HOOK = "blocks.1.hook_resid_post"


class ScaleSAE(torch.nn.Module):
    """A stand-in SAE whose reconstruction is `scale * x` (1: identity, 0: zero)."""

    def __init__(self, d: int, scale: float):
        super().__init__()
        self.scale = scale
        self.W_dec_FD = torch.nn.Parameter(torch.eye(d))

    def encode(self, x_ND):
        return x_ND

    def decode(self, f_NF):
        return self.scale * f_NF


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request, tiny_tok):
    model = tiny_model(request.param, len(tiny_tok))
    return LoadedModel.from_hf(model, tiny_tok, spec=request.param)


@pytest.fixture(scope="module")
def tokens_BS(tiny_tok):
    texts = ["The Golden Gate Bridge is in San Francisco. def add(a, b): return a + b",
             "Sparse autoencoders find features. import numpy as np; x = np.zeros((3, 4))"]
    ids = [tiny_tok(t).input_ids[:24] for t in texts]
    assert all(len(i) == 24 and i[0] == tiny_tok.bos_token_id for i in ids)
    tokens = torch.tensor(ids)
    tokens[1, 12] = tiny_tok.bos_token_id  # a document boundary inside the context
    return tokens


def test_identity_sae_recovers_everything(lm, tokens_BS):
    r = spliced_loss(lm, ScaleSAE(lm.d_model, 1.0), HOOK, [tokens_BS])
    assert r["loss_recovered"] == pytest.approx(1.0, abs=1e-6)
    assert r["kl"] == pytest.approx(0.0, abs=1e-6)
    assert r["ce_spliced"] == pytest.approx(r["ce_clean"], abs=1e-6)
    assert r["delta_ce"] == pytest.approx(0.0, abs=1e-6)
    assert r["ce_zero"] != pytest.approx(r["ce_clean"], abs=1e-3)  # zeroing does hurt
    # Scored: positions 1..22 of row 0 (22), row 1 the same minus the BOS at 12 and its
    # predecessor (whose target is that BOS): 20.
    assert r["n_predictions"] == 42


def test_zero_sae_recovers_nothing(lm, tokens_BS):
    r = spliced_loss(lm, ScaleSAE(lm.d_model, 0.0), HOOK, [tokens_BS[:1], tokens_BS[1:]])
    assert r["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert r["ce_spliced"] == pytest.approx(r["ce_zero"], abs=1e-6)
    assert r["kl"] > 0


def _reference(lm, tokens_BS, scale):
    """CE / KL computed independently: a plain torch hook, F.cross_entropy, F.kl_div."""
    module = lm.model.get_submodule(lm.hook_point(HOOK).module_path)
    bos = lm.tokenizer.bos_token_id
    special = torch.tensor(lm.tokenizer.all_special_ids)
    edit_BS = ~torch.isin(tokens_BS, special)
    factor = {"scale": None}

    def hook(_mod, _args, out):
        if factor["scale"] is None:
            return None
        hidden = out[0] if isinstance(out, tuple) else out
        new = torch.where(edit_BS[..., None], factor["scale"] * hidden, hidden)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = {}
            for name, s in (("clean", None), ("spliced", scale), ("zero", 0.0)):
                factor["scale"] = s
                logits[name] = lm.model(input_ids=tokens_BS).logits[:, :-1]
    finally:
        handle.remove()
    targets = tokens_BS[:, 1:]
    scored = edit_BS[:, :-1] & edit_BS[:, 1:]
    assert not scored[:, 0].any() and (tokens_BS == bos).any()
    ce = {k: torch.nn.functional.cross_entropy(v[scored], targets[scored]).item()
          for k, v in logits.items()}
    logp = torch.log_softmax(logits["clean"][scored], -1)
    logq = torch.log_softmax(logits["spliced"][scored], -1)
    kl = torch.nn.functional.kl_div(logq, logp, log_target=True, reduction="batchmean").item()
    return ce, kl


def test_matches_independent_computation(lm, tokens_BS):
    ce, kl = _reference(lm, tokens_BS, scale=0.5)
    r = spliced_loss(lm, ScaleSAE(lm.d_model, 0.5), HOOK, [tokens_BS])
    assert r["ce_clean"] == pytest.approx(ce["clean"], rel=1e-5)
    assert r["ce_spliced"] == pytest.approx(ce["spliced"], rel=1e-5)
    assert r["ce_zero"] == pytest.approx(ce["zero"], rel=1e-5)
    assert r["kl"] == pytest.approx(kl, rel=1e-4)
    expected = (ce["zero"] - ce["spliced"]) / (ce["zero"] - ce["clean"])
    assert r["loss_recovered"] == pytest.approx(expected, rel=1e-4)
    assert not math.isclose(r["loss_recovered"], 1.0, abs_tol=1e-3)
    assert r["delta_ce"] == pytest.approx(ce["spliced"] - ce["clean"], rel=1e-4, abs=1e-6)


def test_hooks_are_removed(lm, tokens_BS):
    module = lm.model.get_submodule(lm.hook_point(HOOK).module_path)
    before = len(module._forward_hooks) + len(module._forward_pre_hooks)
    spliced_loss(lm, ScaleSAE(lm.d_model, 0.5), HOOK, [tokens_BS])
    assert len(module._forward_hooks) + len(module._forward_pre_hooks) == before


@pytest.mark.slow
def test_default_model_spliced_ends():
    from monosemantic.models import DEFAULT_MODEL, load_model

    lm = load_model(DEFAULT_MODEL)
    text = ("The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait "
            "connecting San Francisco Bay and the Pacific Ocean. It links the city of San "
            "Francisco to Marin County. def add(a, b):\n    return a + b\n")
    tokens_BS = lm.tokenizer([text], return_tensors="pt").input_ids
    identity = spliced_loss(lm, ScaleSAE(640, 1.0), "blocks.6.hook_resid_post", [tokens_BS])
    zero = spliced_loss(lm, ScaleSAE(640, 0.0), "blocks.6.hook_resid_post", [tokens_BS])
    assert identity["loss_recovered"] == pytest.approx(1.0, abs=1e-6) and identity["kl"] < 1e-6
    assert zero["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    # A real model predicts this text far better than zeroing its middle residual stream lets it.
    assert identity["ce_clean"] < 4.0 < identity["ce_zero"]
