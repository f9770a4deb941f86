"""Hook points and the hook mechanism on tiny random models of every supported family."""

from __future__ import annotations

import pytest
import torch

from helpers.tiny import FAMILIES, tiny_model
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel, activation_gradients, capture, edit

TEXT = ["The Golden Gate Bridge is in San Francisco.", "def add(a, b):\n    return a + b"]


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, tiny_tok):
    return LoadedModel.from_hf(
        tiny_model(request.param, len(tiny_tok)), tiny_tok, spec=request.param
    )


@pytest.fixture(scope="module")
def batch(tiny_tok):
    enc = tiny_tok(TEXT, return_tensors="pt", padding=True)
    return enc.input_ids, enc.attention_mask


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_resid_matches_hf_hidden_states(lm, batch):
    ids_BS, mask_BS = batch
    with torch.no_grad():
        hidden = lm.model(
            input_ids=ids_BS, attention_mask=mask_BS, output_hidden_states=True
        ).hidden_states
    assert len(hidden) == lm.n_layers + 1
    names = [f"blocks.{L}.hook_resid_{w}" for L in range(lm.n_layers) for w in ("pre", "post")]
    acts = capture(lm, ids_BS, names, attention_mask_BS=mask_BS)
    for L in range(lm.n_layers):
        torch.testing.assert_close(acts[f"blocks.{L}.hook_resid_pre"], hidden[L], rtol=0, atol=0)
        if L < lm.n_layers - 1:
            torch.testing.assert_close(
                acts[f"blocks.{L}.hook_resid_post"], hidden[L + 1], rtol=0, atol=0
            )
    # HF replaces the last hidden state by the final-normed one; our resid_post is pre-norm.
    last = acts[f"blocks.{lm.n_layers - 1}.hook_resid_post"]
    assert not torch.allclose(last, hidden[-1])
    final_norm = {"gpt2": "transformer.ln_f", "gpt_neox": "gpt_neox.final_layer_norm"}.get(
        lm.family, "model.norm"
    )
    with torch.no_grad():
        torch.testing.assert_close(lm.model.get_submodule(final_norm)(last), hidden[-1])


def test_attn_and_mlp_out_are_what_the_block_adds(lm, batch):
    ids_BS, _ = batch
    names = [p.name for p in lm.hook_points()]
    acts = capture(lm, ids_BS, names)
    for L in range(lm.n_layers):
        summed = (
            acts[f"blocks.{L}.hook_resid_pre"]
            + acts[f"blocks.{L}.hook_attn_out"]
            + acts[f"blocks.{L}.hook_mlp_out"]
        )
        torch.testing.assert_close(
            summed, acts[f"blocks.{L}.hook_resid_post"], rtol=1e-5, atol=1e-5
        )


def test_widths(lm, batch):
    ids_BS, _ = batch
    assert lm.d_mlp == 4 * lm.d_model  # the tiny configs
    acts = capture(lm, ids_BS, ["blocks.1.mlp.hook_post", "blocks.1.hook_resid_post"])
    assert acts["blocks.1.mlp.hook_post"].shape == (*ids_BS.shape, lm.d_mlp)
    assert lm.hook_point("blocks.1.mlp.hook_post").width == lm.d_mlp
    assert acts["blocks.1.hook_resid_post"].shape == (*ids_BS.shape, lm.d_model)
    for point in lm.hook_points():
        assert point.width == (lm.d_mlp if point.kind == "mlp_post" else lm.d_model)


def test_raw_module_name_hooks_the_module_output(lm, batch):
    ids_BS, _ = batch
    point = lm.hook_point("blocks.1.hook_mlp_out")
    raw = lm.hook_point(point.module_path)
    assert (raw.kind, raw.layer, raw.width) == ("module", 1, lm.d_model)
    acts = capture(lm, ids_BS, [point.name, point.module_path])
    torch.testing.assert_close(acts[point.name], acts[point.module_path], rtol=0, atol=0)


def test_early_stop_skips_later_layers_and_unembedding(lm, batch):
    ids_BS, _ = batch
    calls = {"last_block": 0, "unembed": 0}
    last_block = lm.model.get_submodule(f"{lm.blocks_path}.{lm.n_layers - 1}")
    handles = [
        last_block.register_forward_hook(
            lambda *a: calls.__setitem__("last_block", calls["last_block"] + 1)
        ),
        lm.model.get_output_embeddings().register_forward_hook(
            lambda *a: calls.__setitem__("unembed", calls["unembed"] + 1)
        ),
    ]
    try:
        before = _hook_count(lm.model)
        capture(lm, ids_BS, ["blocks.0.hook_resid_post"])
        assert calls == {"last_block": 0, "unembed": 0}
        assert _hook_count(lm.model) == before
        capture(lm, ids_BS, ["blocks.0.hook_resid_post"], stop_early=False)
        assert calls == {"last_block": 1, "unembed": 1}
    finally:
        for h in handles:
            h.remove()


def test_hooks_removed_when_forward_raises(lm, batch):
    ids_BS, _ = batch
    before = _hook_count(lm.model)

    def boom(act):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        with edit(lm, {"blocks.0.hook_resid_post": boom, "blocks.1.mlp.hook_post": lambda a: a}):
            lm.model(ids_BS)
    assert _hook_count(lm.model) == before
    with pytest.raises(UserError, match="must return a tensor of shape"):
        with edit(lm, {"blocks.0.hook_attn_out": lambda a: a[..., :2]}):
            lm.model(ids_BS)
    assert _hook_count(lm.model) == before


def test_identity_edit_keeps_logits_zeroing_changes_them(lm, batch):
    ids_BS, _ = batch
    with torch.no_grad():
        clean = lm.model(ids_BS).logits
        with edit(
            lm,
            {"blocks.1.hook_resid_pre": lambda a: a, "blocks.1.mlp.hook_post": lambda a: a.clone()},
        ):
            same = lm.model(ids_BS).logits
        with edit(lm, {"blocks.1.hook_mlp_out": torch.zeros_like}):
            zeroed = lm.model(ids_BS).logits
    torch.testing.assert_close(same, clean, rtol=0, atol=0)
    assert (zeroed - clean).abs().max() > 1e-4


def test_edit_applies_during_generate(lm, tiny_tok):
    ids_BS = tiny_tok(["The quick brown"], return_tensors="pt").input_ids
    seen = []

    def scramble(act):
        seen.append(act.shape[1])
        return torch.randn_like(act) * 100

    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=tiny_tok.pad_token_id)
    clean = lm.model.generate(ids_BS, **kwargs)
    torch.manual_seed(0)
    with edit(lm, {f"blocks.{lm.n_layers - 1}.hook_resid_post": scramble}):
        edited = lm.model.generate(ids_BS, **kwargs)
    assert len(seen) == 6  # one forward per new token
    assert not torch.equal(clean, edited)


def test_gradient_matches_finite_difference(lm, batch):
    ids_BS, _ = batch
    name = "blocks.1.hook_resid_post"

    def metric(logits_BSV):
        return logits_BSV[0, -1, 5] - logits_BSV[0, -1, 7]

    res = activation_gradients(lm, ids_BS, [name], metric)
    grad = res.grads[name]
    assert grad.shape == res.acts[name].shape
    assert grad[0, -1].abs().sum() > 0
    assert grad[1].abs().sum() == 0  # the metric reads sequence 0 only
    torch.manual_seed(0)
    direction = torch.randn_like(grad)
    eps = 1e-3
    with torch.no_grad(), edit(lm, {name: lambda a: a + eps * direction}):
        nudged = metric(lm.model(ids_BS).logits)
    predicted = res.metric + eps * (grad * direction).sum()
    torch.testing.assert_close(nudged, predicted, rtol=1e-2, atol=1e-4)


def test_edit_is_differentiable(lm, batch):
    ids_BS, _ = batch
    scale = torch.ones(lm.d_model, requires_grad=True)
    with edit(lm, {"blocks.0.hook_resid_post": lambda a: a * scale}):
        loss = lm.model(ids_BS).logits[:, -1].logsumexp(-1).sum()
    loss.backward()
    assert scale.grad is not None and scale.grad.abs().sum() > 0


def test_unknown_hook_names(lm):
    with pytest.raises(UserError, match=r"blocks\.\{L\}\.hook_resid_post"):
        lm.hook_point("blocks.0.hook_resid_middle")
    with pytest.raises(UserError, match="layer 99 does not exist"):
        lm.hook_point("blocks.99.hook_resid_post")
    with pytest.raises(UserError, match="unknown hook point"):
        lm.hook_point("model.nonexistent.module")


def test_hidden_states_reflect_edits(lm, batch):
    ids_BS, _ = batch
    with torch.no_grad():
        lm.model(ids_BS, output_hidden_states=True)  # transformers installs its recorder hooks now
        with edit(lm, {"blocks.0.hook_resid_post": torch.zeros_like}):
            hidden = lm.model(ids_BS, output_hidden_states=True).hidden_states
    assert torch.count_nonzero(hidden[1]) == 0  # our hooks run before transformers' recorders


def test_gradient_metric_must_be_scalar(lm, batch):
    ids_BS, _ = batch
    with pytest.raises(UserError, match="scalar"):
        activation_gradients(lm, ids_BS, ["blocks.0.hook_resid_post"], lambda logits: logits[0, -1])
