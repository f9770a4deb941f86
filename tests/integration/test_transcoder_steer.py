"""Steering, attribution and inspection with a transcoder on tiny random models: the codes come
from hook_mlp_in, the edits land at hook_mlp_out, and only the change the edited codes make to
the transcoder's output is added (its error term, skip term and other codes cancel)."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny import tiny_model
from helpers.transcoder import HOOK_IN, HOOK_OUT, random_transcoder, save_transcoder_run
from monosemantic.analysis.inspect import InspectConfig, inspect_text
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel, capture, edit, load_model
from monosemantic.runs import RunDir
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.steer import FeatureEdit, ablation_effects, attribute, steering
from monosemantic.steer.attribution import metric_per_row
from monosemantic.steer.compare import prompt_ids

PROMPT = "The Golden Gate Bridge is in San Francisco. def add(a, b):"


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request, tiny_tok):
    return LoadedModel.from_hf(tiny_model(request.param, len(tiny_tok)), tiny_tok,
                               spec=request.param)


@pytest.fixture(scope="module")
def tc(lm):
    return random_transcoder(lm.d_model, lm.d_model)


@pytest.fixture(scope="module")
def ids(lm):
    return prompt_ids(lm, PROMPT)


def _logits(lm, ids_1S):
    with torch.no_grad():
        return lm.model(input_ids=ids_1S, use_cache=False).logits


def _sites(lm, tc, ids_1S):
    """(x at hook_mlp_in, y at hook_mlp_out, codes f of x), clean."""
    acts = capture(lm, ids_1S, [HOOK_IN, HOOK_OUT])
    x_SD, y_SD = acts[HOOK_IN][0], acts[HOOK_OUT][0]
    return x_SD, y_SD, tc.encode(x_SD)


def _recorded(lm, ids_1S, context):
    """hook_mlp_in and hook_mlp_out as the model sees them inside `context` (our recorders are
    installed first, so they run after the steering hooks)."""
    seen = {}

    def record(key):
        def fn(a):
            seen[key] = a.detach().clone()[0]
            return a
        return fn

    with edit(lm, {HOOK_IN: record("x"), HOOK_OUT: record("y")}), context:
        logits = _logits(lm, ids_1S)
    return seen["x"], seen["y"], logits


def test_null_edits_leave_the_model_exactly_as_it_was(lm, tc, ids):
    clean = _logits(lm, ids)
    _x, _y, f_SF = _sites(lm, tc, ids)
    p = 3
    i = int(f_SF[p].argmax())
    assert f_SF[p, i] > 0
    with steering(lm, tc, HOOK_IN, [FeatureEdit(i, float(f_SF[p, i]), "raw")],
                  positions=slice(p, p + 1), hook_out=HOOK_OUT):
        assert torch.equal(_logits(lm, ids), clean)
    silent = int((f_SF > 0).sum(0).argmin())
    assert (f_SF[:, silent] == 0).all()
    with steering(lm, tc, HOOK_IN, [FeatureEdit(silent, 0.0, "raw")], hook_out=HOOK_OUT):
        assert torch.equal(_logits(lm, ids), clean)
    with steering(lm, tc, HOOK_IN, [FeatureEdit(i, 0.0, "raw")], mode="add", hook_out=HOOK_OUT):
        assert torch.equal(_logits(lm, ids), clean)


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_clamp_changes_mlp_out_by_the_decoder_row_difference(lm, tc, ids, value):
    x_SD, y_SD, f_SF = _sites(lm, tc, ids)
    p = 4
    i = int(f_SF[p].argmax())
    steer = steering(lm, tc, HOOK_IN, [FeatureEdit(i, value, "raw")],
                     positions=slice(p, p + 1), hook_out=HOOK_OUT)
    x_new_SD, y_new_SD, logits = _recorded(lm, ids, steer)
    expected_SD = y_SD.clone()
    # decode'(f edited) - decode'(f): b_dec, the skip term and the other codes cancel.
    f_edit_SF = f_SF.clone()
    f_edit_SF[p, i] = value
    expected_SD[p] += (tc.add_skip(tc.decode(f_edit_SF), x_SD)
                       - tc.add_skip(tc.decode(f_SF), x_SD))[p]
    torch.testing.assert_close(x_new_SD, x_SD, rtol=0, atol=0)  # the read site is untouched
    torch.testing.assert_close(y_new_SD, expected_SD, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_new_SD[p] - y_SD[p], (value - f_SF[p, i]) * tc.W_dec[i],
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(logits, _logits(lm, ids))


def test_add_mode_adds_the_decoder_row_at_mlp_out(lm, tc, ids):
    _x, y_SD, _f = _sites(lm, tc, ids)
    steer = steering(lm, tc, HOOK_IN, [FeatureEdit(7, 3.0, "raw")], mode="add",
                     positions=slice(2, 4), hook_out=HOOK_OUT)
    _x_new, y_new_SD, _logits_new = _recorded(lm, ids, steer)
    expected_SD = y_SD.clone()
    expected_SD[2:4] += 3.0 * tc.W_dec[7]
    torch.testing.assert_close(y_new_SD, expected_SD, rtol=1e-5, atol=1e-5)


def test_steered_generation_with_a_cache_matches_without(lm, tc, ids):
    """Both hooks fire on every cached step; codes come from that step's hook_mlp_in."""
    def greedy(use_cache):
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                max_new_tokens=5, do_sample=False, use_cache=use_cache,
                                pad_token_id=lm.tokenizer.pad_token_id)
        return out

    with steering(lm, tc, HOOK_IN, [FeatureEdit(5, 20.0, "raw")], hook_out=HOOK_OUT):
        assert torch.equal(greedy(True), greedy(False))


def test_sites_are_checked(lm, tc):
    with pytest.raises(UserError, match="give hook_out"):
        with steering(lm, tc, HOOK_IN, [FeatureEdit(1, 0.0, "raw")]):
            pass
    with pytest.raises(UserError, match="give hook_out"):
        attribute(lm, tc, HOOK_IN, PROMPT, " a")
    sae = create_sae(SAEConfig(architecture="relu", d_in=lm.d_model, n_features=8))
    with pytest.raises(UserError, match="hook_out is for transcoders"):
        with steering(lm, sae, HOOK_OUT, [FeatureEdit(1, 0.0, "raw")], hook_out=HOOK_IN):
            pass
    with pytest.raises(UserError, match="must come first"):
        with steering(lm, tc, "blocks.2.hook_mlp_in", [FeatureEdit(1, 0.0, "raw")],
                      hook_out=HOOK_OUT):
            pass


def _target_baseline(lm, ids):
    tok = lm.tokenizer
    special = set(tok.all_special_ids)
    picked = [t for t in _logits(lm, ids)[0, -1].argsort(descending=True).tolist()
              if t not in special
              and tok(tok.decode([t]), add_special_tokens=False)["input_ids"] == [t]]
    t, b = picked[:2]
    return tok.decode([t]), tok.decode([b]), (t, b)


def test_attribution_is_the_derivative_of_the_ablation(lm, tc, ids):
    target, baseline, (t, b) = _target_baseline(lm, ids)
    result = attribute(lm, tc, HOOK_IN, PROMPT, target, baseline, top=5, ablate=False,
                       hook_out=HOOK_OUT)
    assert len(result.rows) == 5 and all(r.position > 0 for r in result.rows)
    metric = metric_per_row(t, b)
    _x, _y, f_SF = _sites(lm, tc, ids)
    eps = 1e-3
    for row in result.rows[:3]:
        assert row.activation == pytest.approx(float(f_SF[row.position, row.feature]), rel=1e-5)
        contribution_D = float(f_SF[row.position, row.feature]) * tc.W_dec[row.feature]
        pos = torch.tensor([row.position, row.position])
        deltas_2D = torch.stack([-eps * contribution_D, eps * contribution_D])
        e_minus, e_plus = ablation_effects(lm, HOOK_OUT, ids, pos, deltas_2D, metric)
        derivative = float(e_minus - e_plus) / (2 * eps)
        assert derivative == pytest.approx(row.attribution, rel=2e-2, abs=1e-4)


def test_attribution_ablation_is_the_clamp_to_zero(lm, tc, ids):
    target, baseline, (t, b) = _target_baseline(lm, ids)
    result = attribute(lm, tc, HOOK_IN, PROMPT, target, baseline, top=4, hook_out=HOOK_OUT)
    metric = metric_per_row(t, b)
    clean = float(metric(_logits(lm, ids))[0])
    for row in result.rows:
        with steering(lm, tc, HOOK_IN, [FeatureEdit(row.feature, 0.0, "raw")],
                      positions=slice(row.position, row.position + 1), hook_out=HOOK_OUT):
            ablated = float(metric(_logits(lm, ids))[0])
        assert row.ablation_effect == pytest.approx(clean - ablated, abs=1e-4)
    assert result.all_pairs is not None and result.all_pairs.n_ablated == result.n_active


@pytest.fixture(scope="module")
def tc_run(tmp_path_factory, tiny_model_dir):
    lm = load_model(str(tiny_model_dir))
    tc = random_transcoder(lm.d_model, lm.d_model, seed=1)
    return save_transcoder_run(tmp_path_factory.mktemp("tc_run") / "run", tiny_model_dir, tc), lm


def test_inspect_encodes_the_input_site(tc_run):
    run, lm = tc_run
    tf = inspect_text(InspectConfig(run, PROMPT, device="cpu"))
    tc = RunDir.open(run).load_sae()  # as saved (decoder norms folded in)
    acts = capture(lm, prompt_ids(lm, PROMPT), [HOOK_IN, HOOK_OUT])
    from_in_SF, from_out_SF = (tc.encode(acts[h][0, 1:]) for h in (HOOK_IN, HOOK_OUT))
    torch.testing.assert_close(tf.f_SF, from_in_SF, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tf.f_SF, from_out_SF, rtol=1e-3, atol=1e-3)


def test_steer_and_attribute_cli_on_a_transcoder_run(tc_run, tmp_path, capsys):
    run, lm = tc_run
    assert RunDir.open(run).decoder_hook == HOOK_OUT
    out = tmp_path / "steer.json"
    # A feature clamped to 0 where it is silent (on the prompt: the generated tokens and the
    # neutral text may make it fire): the prompt's next-token distributions do not change.
    tc = RunDir.open(run).load_sae()
    f_SF = tc.encode(capture(lm, prompt_ids(lm, PROMPT), [HOOK_IN])[HOOK_IN][0, 1:])
    silent = int((f_SF > 0).sum(0).argmin())
    assert (f_SF[:, silent] == 0).all()
    assert main(["steer", str(run), "--feature", f"{silent}=0", "--prompt", PROMPT,
                 "--max-new-tokens", "3", "--device", "cpu", "--json-out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["kl_next_token"] == 0.0
    assert main(["steer", str(run), "--feature", "3=40", "--prompt", PROMPT,
                 "--max-new-tokens", "3", "--device", "cpu", "--json-out", str(out)]) == 0
    assert json.loads(out.read_text())["kl_next_token"] > 0
    out = tmp_path / "attr.json"
    assert main(["attribute", str(run), "--prompt", PROMPT, "--target", " a", "--top", "3",
                 "--device", "cpu", "--json-out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 3 and all(r["ablation_effect"] is not None for r in data["rows"])
    capsys.readouterr()


def test_browser_backend_steers_and_inspects_a_transcoder(tc_run):
    import numpy as np

    from monosemantic.web.backend import ModelBackend

    run, lm = tc_run
    backend = ModelBackend(RunDir.open(run), np.ones(64, dtype=np.float32), device="cpu")
    tc = RunDir.open(run).load_sae()
    f_SF = tc.encode(capture(lm, prompt_ids(lm, PROMPT), [HOOK_IN])[HOOK_IN][0, 1:])
    shown = backend.inspect(PROMPT, top=3, feature=0)
    torch.testing.assert_close(torch.tensor(shown["feature_acts"]), f_SF[:, 0],
                               rtol=1e-5, atol=1e-5)
    silent = int((f_SF > 0).sum(0).argmin())
    common = dict(max_new_tokens=2, temperature=0.0, top_p=1.0, seed=0, max_multiplier=100.0)
    null = backend.steer(PROMPT, [(silent, 0.0, "raw")], mode="clamp", **common)
    assert null["kl_next_token"] == 0.0
    strong = backend.steer(PROMPT, [(3, 40.0, "raw")], mode="add", **common)
    assert strong["kl_next_token"] > 0
