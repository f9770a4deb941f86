"""Steering and attribution mechanics on a tiny random model with a small random topk SAE.

Known-by-construction answers: clamping a code to the value it already has leaves the forward
bit-identical (the error term is kept), clamping to 0 is the ablation x - f_i·W_dec[i], edits stay
inside their span (also during cached generation), and an attribution is the derivative of the
ablation along the feature's contribution.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from helpers.tiny import FAMILIES, tiny_model
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel, capture, edit
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.steer import (
    FeatureEdit,
    ablation_effects,
    attribute,
    parse_edit,
    steer_compare,
    steering,
)
from monosemantic.steer.attribution import metric_per_row, uniform_sample
from monosemantic.steer.compare import prompt_ids
from monosemantic.steer.correlation import pearson, spearman

HOOK = "blocks.1.hook_resid_post"
PROMPT = "The Golden Gate Bridge is in San Francisco. def add(a, b):"


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request, tiny_tok):
    return LoadedModel.from_hf(tiny_model(request.param, len(tiny_tok)), tiny_tok,
                               spec=request.param)


@pytest.fixture(scope="module")
def sae(lm):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=lm.d_model, n_features=64, k=4))
    return sae.requires_grad_(False)


@pytest.fixture(scope="module")
def ids(lm):
    return prompt_ids(lm, PROMPT)


def _logits(lm, ids_1S):
    with torch.no_grad():
        return lm.model(input_ids=ids_1S, use_cache=False).logits


def _codes(lm, sae, ids_1S):
    x_SD = capture(lm, ids_1S, [HOOK])[HOOK][0]
    return x_SD, sae.encode(x_SD)


def test_clamp_to_current_value_is_exact(lm, sae, ids):
    clean = _logits(lm, ids)
    _x_SD, f_SF = _codes(lm, sae, ids)
    p = 3
    i = int(f_SF[p].argmax())
    assert f_SF[p, i] > 0
    edits = [FeatureEdit(i, float(f_SF[p, i]), "raw")]
    with steering(lm, sae, HOOK, edits, positions=slice(p, p + 1)):
        steered = _logits(lm, ids)
    assert torch.equal(steered, clean)
    # A feature silent everywhere, clamped to 0 everywhere: also bit-identical.
    silent = int((f_SF > 0).sum(0).argmin())
    assert (f_SF[:, silent] == 0).all()
    with steering(lm, sae, HOOK, [FeatureEdit(silent, 0.0, "raw")]):
        assert torch.equal(_logits(lm, ids), clean)


def test_clamp_to_zero_is_the_ablation_with_error_kept(lm, sae, ids):
    x_SD, f_SF = _codes(lm, sae, ids)
    p = 4
    i = int(f_SF[p].argmax())
    # By definition: decode the edited codes, add the error of the unedited x back.
    f_edit_SF = f_SF.clone()
    f_edit_SF[p, i] = 0.0
    err_SD = x_SD - sae.decode(f_SF)
    x_new_SD = x_SD.clone()
    x_new_SD[p] = (sae.decode(f_edit_SF) + err_SD)[p]
    with edit(lm, {HOOK: lambda a: x_new_SD[None]}):
        expected = _logits(lm, ids)
    with steering(lm, sae, HOOK, [FeatureEdit(i, 0.0, "raw")], positions=slice(p, p + 1)):
        got = _logits(lm, ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, _logits(lm, ids))


def test_topk_clamp_bypasses_the_selection(lm, sae, ids):
    """Clamping a feature outside the top k sets it anyway (x + c·W_dec[i]); clamping a top-k
    feature to 0 does not let the (k+1)-th in (x - f_i·W_dec[i], nothing else)."""
    x_SD, f_SF = _codes(lm, sae, ids)
    p = 2
    outside = int((f_SF[p] == 0).nonzero()[0])
    inside = int(f_SF[p].argmax())
    seen = {}

    def record(a):
        seen["x"] = a.detach().clone()
        return a

    for feature, value, expected_delta_D in [
        (outside, 3.0, 3.0 * sae.W_dec[outside]),
        (inside, 0.0, -f_SF[p, inside] * sae.W_dec[inside]),
    ]:
        # Our recorder is installed first, so it runs after the steering hook (hooks.py order).
        with edit(lm, {HOOK: record}), steering(lm, sae, HOOK, [FeatureEdit(feature, value, "raw")],
                                                positions=slice(p, p + 1)):
            _logits(lm, ids)
        torch.testing.assert_close(seen["x"][0, p] - x_SD[p], expected_delta_D, rtol=1e-5,
                                   atol=1e-6)
        assert torch.equal(seen["x"][0, :p], x_SD[:p])


def test_add_mode_adds_the_decoder_row(lm, sae, ids):
    i, c = 5, 2.5
    not_bos_S = (torch.arange(ids.shape[1]) > 0)[:, None]
    with edit(lm, {HOOK: lambda a: a + c * sae.W_dec[i] * not_bos_S}):
        expected = _logits(lm, ids)
    with steering(lm, sae, HOOK, [FeatureEdit(i, c, "raw")], mode="add"):
        got = _logits(lm, ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # With include_special the BOS position gets the decoder row too.
    with edit(lm, {HOOK: lambda a: a + c * sae.W_dec[i]}):
        expected_all = _logits(lm, ids)
    with steering(lm, sae, HOOK, [FeatureEdit(i, c, "raw")], mode="add", include_special=True):
        torch.testing.assert_close(_logits(lm, ids), expected_all, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected_all, expected)
    # "max" units: value × max activation.
    max_act_F = torch.full((64,), 0.5)
    with steering(lm, sae, HOOK, [FeatureEdit(i, c / 0.5, "max")], mode="add",
                  max_act_F=max_act_F):
        torch.testing.assert_close(_logits(lm, ids), expected, rtol=1e-5, atol=1e-5)


def test_edit_confined_to_positions(lm, sae, ids):
    clean = _logits(lm, ids)
    with steering(lm, sae, HOOK, [FeatureEdit(7, 5.0, "raw")], positions=slice(5, 8)):
        got = _logits(lm, ids)
    assert torch.equal(got[0, :5], clean[0, :5])
    assert not torch.allclose(got[0, 5], clean[0, 5])


def _steered_acts(lm, sae, ids_1S, edits, **kwargs):
    """The hook's activations [S, D] after steering (our recorder is installed first, so it runs
    after the steering hook: hooks.py order)."""
    seen = {}

    def record(a):
        seen["x"] = a.detach().clone()
        return a

    with edit(lm, {HOOK: record}), steering(lm, sae, HOOK, edits, **kwargs):
        _logits(lm, ids_1S)
    return seen["x"][0]


@pytest.mark.parametrize("mode", ["clamp", "add"])
def test_special_positions_not_steered_by_default(lm, sae, ids, mode):
    """A strong edit leaves BOS and a special token inside the prompt alone by default, and
    moves them with include_special."""
    eos = lm.tokenizer.eos_token_id
    ids_1S = torch.cat([ids[:, :4], torch.tensor([[eos]]), ids[:, 4:]], dim=1)
    special_S = torch.zeros(ids_1S.shape[1], dtype=torch.bool)
    special_S[[0, 4]] = True
    x_SD = capture(lm, ids_1S, [HOOK])[HOOK][0]
    edits = [FeatureEdit(9, 50.0, "raw")]
    default = _steered_acts(lm, sae, ids_1S, edits, mode=mode)
    assert torch.equal(default[special_S], x_SD[special_S])
    assert not torch.allclose(default[~special_S], x_SD[~special_S])
    included = _steered_acts(lm, sae, ids_1S, edits, mode=mode, include_special=True)
    assert not torch.allclose(included[0], x_SD[0])
    assert not torch.allclose(included[4], x_SD[4])


class _ForceFirst(LogitsProcessor):
    """Makes `token` the first generated token, whatever the model predicts."""

    def __init__(self, token):
        self.token, self.calls = token, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == 1:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.token] = 0.0
        return scores


def _logits_after(lm, ids_1S, token):
    """Cached generation of two tokens, the first forced to `token`: the logits of the second
    step, computed by a forward over `token` alone at position len(ids)."""
    with torch.no_grad():
        out = lm.model.generate(input_ids=ids_1S, attention_mask=torch.ones_like(ids_1S),
                                max_new_tokens=2, do_sample=False, pad_token_id=0,
                                eos_token_id=None, output_logits=True,
                                return_dict_in_generate=True,
                                logits_processor=LogitsProcessorList([_ForceFirst(token)]))
    assert int(out.sequences[0, ids_1S.shape[1]]) == token
    return out.logits[1]


def test_generated_special_token_not_steered(lm, sae, ids):
    """A special token generated during cached `generate` (an EOS) is recognised in its own
    forward and skipped; a plain token at the same place is steered."""
    n = ids.shape[1]
    eos, plain = lm.tokenizer.eos_token_id, int(ids[0, 3])
    edits = [FeatureEdit(9, 50.0, "raw")]
    for token, skipped in [(eos, True), (plain, False)]:
        clean = _logits_after(lm, ids, token)
        with steering(lm, sae, HOOK, edits, positions=slice(n, n + 1)):
            steered = _logits_after(lm, ids, token)
        assert torch.equal(steered, clean) is skipped
        with steering(lm, sae, HOOK, edits, positions=slice(n, n + 1), include_special=True):
            assert not torch.allclose(_logits_after(lm, ids, token), clean)


def _greedy(lm, ids_1S, n, use_cache=True):
    with torch.no_grad():
        out = lm.model.generate(input_ids=ids_1S, attention_mask=torch.ones_like(ids_1S),
                                max_new_tokens=n, do_sample=False, use_cache=use_cache,
                                pad_token_id=0, eos_token_id=None)
    return out[0, ids_1S.shape[1]:]


def test_generation_positions_are_absolute(lm, sae, ids):
    """With a KV cache, a span over generated positions steers exactly those: the tokens
    predicted before it are unchanged, and the cached run equals the uncached one."""
    n_prompt = ids.shape[1]
    clean = _greedy(lm, ids, 8)
    span = slice(n_prompt + 2, n_prompt + 3)
    edits = [FeatureEdit(11, 40.0, "raw")]
    with steering(lm, sae, HOOK, edits, positions=span):
        cached = _greedy(lm, ids, 8)
        uncached = _greedy(lm, ids, 8, use_cache=False)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:3], clean[:3])
    assert not torch.equal(cached, clean)
    # A span over the prompt stays on the prompt: same tokens as steering the prompt by hand.
    with steering(lm, sae, HOOK, edits, positions=slice(0, n_prompt)):
        prompt_only = _greedy(lm, ids, 6)
    with steering(lm, sae, HOOK, edits):
        everywhere = _greedy(lm, ids, 6)
    with steering(lm, sae, HOOK, edits, positions=slice(0, n_prompt)):
        assert torch.equal(_greedy(lm, ids, 6, use_cache=False), prompt_only)
    assert not torch.equal(prompt_only, everywhere)


class _Boom(LogitsProcessor):
    def __init__(self):
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return scores


def test_hooks_removed_even_when_generation_raises(lm, sae, ids):
    before = _hook_count(lm.model)
    boom = _Boom()
    with (pytest.raises(RuntimeError, match="boom"),
          steering(lm, sae, HOOK, [FeatureEdit(3, 1.0, "raw")], positions=slice(1, 3))):
        assert _hook_count(lm.model) == before + 2
        lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5,
                          do_sample=False, pad_token_id=0,
                          logits_processor=LogitsProcessorList([boom]))
    assert boom.calls == 2
    assert _hook_count(lm.model) == before


@pytest.mark.parametrize("edits, kwargs, message", [
    ([FeatureEdit(64, 1.0, "raw")], {}, "does not exist"),
    ([FeatureEdit(-1, 1.0, "raw")], {}, "does not exist"),
    ([FeatureEdit(3, 1.0, "volts")], {}, "unknown unit"),
    ([FeatureEdit(3, 2.0)], {}, "no max activations"),
    ([FeatureEdit(3, 150.0)], {"max_act_F": torch.ones(64)}, "exceeds the limit"),
    ([FeatureEdit(3, 2.0)], {"max_act_F": torch.zeros(64)}, "never fired"),
    ([FeatureEdit(3, 1.0, "raw"), FeatureEdit(3, 2.0, "raw")], {}, "edited twice"),
    ([], {}, "no feature edit"),
    ([FeatureEdit(3, 1.0, "raw")], {"mode": "multiply"}, "unknown steering mode"),
    ([FeatureEdit(3, 1.0, "raw")], {"positions": slice(-2, None)}, "non-negative"),
])
def test_bad_edits_are_user_errors(lm, sae, edits, kwargs, message):
    before = _hook_count(lm.model)
    with pytest.raises(UserError, match=message), steering(lm, sae, HOOK, edits, **kwargs):
        pass
    assert _hook_count(lm.model) == before


def test_multiplier_limit_is_configurable(lm, sae, ids):
    edits = [FeatureEdit(3, 150.0)]
    with (pytest.raises(UserError, match="exceeds the limit"),
          steering(lm, sae, HOOK, edits, max_act_F=torch.ones(64))):
        pass
    # Raised to 200×, the 150× edit is applied: 150 × max activation 0.5 = 75 raw units.
    with steering(lm, sae, HOOK, edits, max_act_F=torch.full((64,), 0.5), max_multiplier=200):
        got = _logits(lm, ids)
    with steering(lm, sae, HOOK, [FeatureEdit(3, 75.0, "raw")]):
        torch.testing.assert_close(got, _logits(lm, ids))
    assert not torch.allclose(got, _logits(lm, ids))


def test_steer_compare_null_and_strong_edits(lm, sae):
    ids = prompt_ids(lm, PROMPT)
    _, f_SF = _codes(lm, sae, ids)
    silent = int((f_SF > 0).sum(0).argmin())
    # Silent on the prompt (the neutral text is a prefix-free slice of it): clamping it to 0
    # there is a no-op, so everything must match to the bit.
    null = steer_compare(lm, sae, HOOK, PROMPT, [FeatureEdit(silent, 0.0, "raw")],
                         max_new_tokens=6, neutral_text=PROMPT,
                         positions=slice(0, ids.shape[1]))
    assert null.steered == null.unsteered
    assert null.kl_next_token == 0.0 and null.neutral_loss_delta == 0.0
    strong = steer_compare(lm, sae, HOOK, PROMPT, [parse_edit("9=20x")], max_act_F=torch.ones(64),
                           max_new_tokens=6, temperature=0.8, top_p=0.9, seed=3)
    assert strong.kl_next_token > 1e-4
    assert strong.neutral_loss_delta != 0.0
    assert strong.to_dict()["edits"] == ["9=20x"]
    # Same seed, same sampling: the unsteered continuation is reproducible.
    again = steer_compare(lm, sae, HOOK, PROMPT, [parse_edit("9=20x")], max_act_F=torch.ones(64),
                          max_new_tokens=6, temperature=0.8, top_p=0.9, seed=3)
    assert (again.unsteered, again.steered) == (strong.unsteered, strong.steered)


def _target_baseline(lm, ids):
    """The two likeliest next tokens whose text encodes back to exactly that token."""
    tok = lm.tokenizer
    special = set(tok.all_special_ids)
    picked = [t for t in _logits(lm, ids)[0, -1].argsort(descending=True).tolist()
              if t not in special
              and tok(tok.decode([t]), add_special_tokens=False)["input_ids"] == [t]]
    t, b = picked[:2]
    return tok.decode([t]), tok.decode([b]), (t, b)


def test_attribution_is_the_derivative_of_the_ablation(lm, sae, ids):
    target, baseline, (t, b) = _target_baseline(lm, ids)
    result = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=5, ablate=False)
    assert len(result.rows) == 5 and result.n_active >= 5
    attrs = [abs(r.attribution) for r in result.rows]
    assert attrs == sorted(attrs, reverse=True)
    assert all(r.position > 0 for r in result.rows)
    metric = metric_per_row(t, b)
    _x_SD, f_SF = _codes(lm, sae, ids)
    eps = 1e-3
    for row in result.rows[:3]:
        contribution_D = float(f_SF[row.position, row.feature]) * sae.W_dec[row.feature]
        pos = torch.tensor([row.position, row.position])
        # effect(δ) = metric(x) - metric(x + δ); the central difference of ±eps·contribution.
        deltas_2D = torch.stack([-eps * contribution_D, eps * contribution_D])
        e_minus, e_plus = ablation_effects(lm, HOOK, ids, pos, deltas_2D, metric)
        derivative = float(e_minus - e_plus) / (2 * eps)
        assert derivative == pytest.approx(row.attribution, rel=2e-2, abs=1e-4)


def test_attribution_ablations_batched_match_single_forwards(lm, sae, ids):
    target, baseline, (t, b) = _target_baseline(lm, ids)
    batched = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=6, batch_size=4)
    x_SD, f_SF = _codes(lm, sae, ids)
    metric = metric_per_row(t, b)
    clean = float(metric(_logits(lm, ids))[0])
    assert batched.metric == pytest.approx(clean, abs=1e-5)
    for row in batched.rows:
        x_new_SD = x_SD.clone()
        x_new_SD[row.position] -= f_SF[row.position, row.feature] * sae.W_dec[row.feature]
        with edit(lm, {HOOK: lambda a, x=x_new_SD: x[None]}):
            ablated = float(metric(_logits(lm, ids))[0])
        assert row.ablation_effect == pytest.approx(clean - ablated, abs=1e-4)
        assert row.activation == pytest.approx(float(f_SF[row.position, row.feature]), rel=1e-5)
    assert batched.all_pairs is not None
    assert -1.0 <= batched.all_pairs.pearson_attribution <= 1.0
    data = batched.to_dict()
    assert data["rows"][0]["feature"] == batched.rows[0].feature


def _active_pairs(lm, sae, ids):
    """Active (position, feature) pairs at non-special positions, by brute force."""
    _x_SD, f_SF = _codes(lm, sae, ids)
    special = set(lm.tokenizer.all_special_ids)
    return [(p, i) for p, t in enumerate(ids[0].tolist()) if p > 0 and t not in special
            for i in range(f_SF.shape[1]) if f_SF[p, i] != 0]


def test_attribution_correlations_are_over_every_active_pair(lm, sae, ids):
    """Every active non-special pair is ablated and correlated, not just the listed rows."""
    target, baseline, _ = _target_baseline(lm, ids)
    pairs = _active_pairs(lm, sae, ids)
    few = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=5, batch_size=16)
    every = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=10_000, batch_size=16)
    assert few.n_active == len(pairs) == len(every.rows) and len(few.rows) == 5
    assert {(r.position, r.feature) for r in every.rows} == set(pairs)
    c = few.all_pairs
    assert (c.n_pairs, c.n_ablated, c.sampled, c.sample_seed) == (len(pairs), len(pairs), False,
                                                                  None)
    assert c == every.all_pairs
    attr = [r.attribution for r in every.rows]
    act = [r.activation for r in every.rows]
    effect = [r.ablation_effect for r in every.rows]
    assert c.pearson_attribution == pytest.approx(pearson(attr, effect), abs=1e-9)
    assert c.spearman_attribution == pytest.approx(spearman(attr, effect), abs=1e-9)
    assert c.pearson_activation == pytest.approx(pearson(act, effect), abs=1e-9)
    assert c.spearman_activation == pytest.approx(spearman(act, effect), abs=1e-9)
    # Not the correlations over the top rows by |attribution| (on these near-linear tiny
    # models attribution tracks ablation closely either way, so the check is on the value).
    top_attr = [r.attribution for r in few.rows]
    top_act = [r.activation for r in few.rows]
    top_effect = [r.ablation_effect for r in few.rows]
    assert c.pearson_attribution != pytest.approx(pearson(top_attr, top_effect), abs=1e-6)
    assert c.spearman_attribution != pytest.approx(spearman(top_attr, top_effect), abs=1e-6)
    assert c.pearson_activation != pytest.approx(pearson(top_act, top_effect), abs=1e-6)
    # The listed rows carry the same ablation effects as in the full listing.
    by_pair = {(r.position, r.feature): r.ablation_effect for r in every.rows}
    assert [r.ablation_effect for r in few.rows] == [by_pair[r.position, r.feature]
                                                     for r in few.rows]


def test_attribution_above_the_cap_ablates_a_uniform_sample(lm, sae, ids):
    target, baseline, _ = _target_baseline(lm, ids)
    every = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=10_000)
    n = every.n_active
    cap = n // 3
    sampled = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=4, max_ablations=cap,
                        sample_seed=5)
    c = sampled.all_pairs
    assert (c.n_pairs, c.n_ablated, c.sampled, c.sample_seed) == (n, cap, True, 5)
    assert c.population == f"a uniform sample of {cap} of {n} active pairs (seed 5)"
    # The sample is uniform_sample's draw over the pairs in (position, feature) order, so it
    # depends on the seed and the number of pairs only, never on attribution or activation.
    in_order = sorted(every.rows, key=lambda r: (r.position, r.feature))
    chosen = [in_order[m] for m in uniform_sample(n, cap, 5).tolist()]
    effect = [r.ablation_effect for r in chosen]
    assert c.pearson_attribution == pytest.approx(
        pearson([r.attribution for r in chosen], effect), abs=1e-9)
    assert c.spearman_activation == pytest.approx(
        spearman([r.activation for r in chosen], effect), abs=1e-9)
    # The listed rows are ablated whether or not they fell in the sample.
    assert all(r.ablation_effect is not None for r in sampled.rows)
    other = attribute(lm, sae, HOOK, PROMPT, target, baseline, top=4, max_ablations=cap,
                      sample_seed=6).all_pairs
    assert other.pearson_attribution != c.pearson_attribution
    with pytest.raises(UserError, match="max_ablations"):
        attribute(lm, sae, HOOK, PROMPT, target, baseline, max_ablations=0)


def test_attribution_logprob_metric_without_baseline(lm, sae, ids):
    target, _, (t, _) = _target_baseline(lm, ids)
    result = attribute(lm, sae, HOOK, PROMPT, target, top=3)
    logp = torch.log_softmax(_logits(lm, ids)[0, -1], -1)[t]
    assert result.metric == pytest.approx(float(logp), abs=1e-5)
    assert result.metric_name.startswith("log p(")
    with pytest.raises(UserError, match="same token"):
        attribute(lm, sae, HOOK, PROMPT, target, target)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"llama", "gemma3"}))
def test_clamp_exact_on_other_families(family, tiny_tok):
    lm = LoadedModel.from_hf(tiny_model(family, len(tiny_tok)), tiny_tok, spec=family)
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=lm.d_model, n_features=32))
    sae.requires_grad_(False)
    ids = prompt_ids(lm, PROMPT)
    clean = _logits(lm, ids)
    _x_SD, f_SF = _codes(lm, sae, ids)
    i = int(f_SF[2].argmax())
    with steering(lm, sae, HOOK, [FeatureEdit(i, float(f_SF[2, i]), "raw")],
                  positions=slice(2, 3)):
        assert torch.equal(_logits(lm, ids), clean)
    n = ids.shape[1]
    with steering(lm, sae, HOOK, [FeatureEdit(i, 30.0, "raw")], positions=slice(n + 1, n + 2)):
        assert torch.equal(_greedy(lm, ids, 5), _greedy(lm, ids, 5, use_cache=False))
