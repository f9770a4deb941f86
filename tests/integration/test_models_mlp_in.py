"""`hook_mlp_in`: the MLP module's input, for every layout family.

Capturing it and running the block's MLP module (plus, for gemma3, the post-MLP norm that sits
between the MLP and `hook_mlp_out`) reproduces `hook_mlp_out`; editing it changes the output."""

from __future__ import annotations

import pytest
import torch

from helpers.tiny import FAMILIES, tiny_model, tiny_tokenizer
from monosemantic.models import LoadedModel, capture, edit


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _lm(family: str, tokenizer) -> LoadedModel:
    return LoadedModel.from_hf(tiny_model(family, len(tokenizer)), tokenizer)


def _mlp_sublayer(lm: LoadedModel, layer: int, x_BSD: torch.Tensor) -> torch.Tensor:
    """What `hook_mlp_out` holds, computed from `hook_mlp_in`."""
    block = lm.model.get_submodule(lm.hook_point(f"blocks.{layer}.hook_resid_post").module_path)
    out_BSD = block.mlp(x_BSD)
    if lm.family == "gemma3":
        out_BSD = block.post_feedforward_layernorm(out_BSD)
    return out_BSD


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_in_through_the_mlp_gives_mlp_out(family, tokenizer):
    lm = _lm(family, tokenizer)
    ids_BS = tokenizer(["The quick brown fox jumps over the lazy dog."],
                       return_tensors="pt").input_ids
    names = ["blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"]
    acts = capture(lm, ids_BS, names)
    point = lm.hook_point(names[0])
    assert point.kind == "mlp_in" and point.reads_input and point.width == lm.d_model
    assert acts[names[0]].shape == acts[names[1]].shape
    # Not the residual stream itself: the pre-MLP norm was applied.
    resid_BSD = capture(lm, ids_BS, ["blocks.1.hook_resid_pre"])["blocks.1.hook_resid_pre"]
    assert not torch.allclose(acts[names[0]], resid_BSD)
    with torch.no_grad():
        recomputed_BSD = _mlp_sublayer(lm, 1, acts[names[0]])
    torch.testing.assert_close(recomputed_BSD, acts[names[1]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_edit_of_mlp_in_reaches_mlp_out(family, tokenizer):
    lm = _lm(family, tokenizer)
    ids_BS = tokenizer(["Sparse autoencoders find features."], return_tensors="pt").input_ids
    out = "blocks.0.hook_mlp_out"
    clean_BSD = capture(lm, ids_BS, [out])[out]
    with edit(lm, {"blocks.0.hook_mlp_in": torch.zeros_like}):
        zeroed_BSD = capture(lm, ids_BS, [out])[out]
    with torch.no_grad():
        expected_BSD = _mlp_sublayer(lm, 0, torch.zeros_like(clean_BSD))
    assert not torch.allclose(zeroed_BSD, clean_BSD)
    torch.testing.assert_close(zeroed_BSD, expected_BSD, rtol=1e-5, atol=1e-6)
