"""measure_absorption end to end: a tiny random Llama whose word embeddings carry planted letter
(and absorbed-word) directions, wordfreq's word list, prompts, capture, SAE, probes."""

from __future__ import annotations

import pytest
import torch

from helpers.absorption import planted, planted_sae, word_tokenizer, word_vectors
from helpers.tiny import tiny_model
from monosemantic.bench.absorption import (
    AbsorptionConfig,
    held_out_mask,
    measure_absorption,
    word_activations,
)
from monosemantic.bench.words import frequent_words, single_token_words, word_prompts
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel, capture
from monosemantic.runs import RunModel

HOOK = "blocks.0.hook_resid_post"
N_WORDS = 600
CFG = AbsorptionConfig(n_words=N_WORDS, letters="st", test_fraction=0.5, min_true_positives=5,
                       n_examples=20)


@pytest.fixture(scope="module")
def world():
    candidates = frequent_words()[:1000]
    # Every 9th word is not in the vocabulary: the word list must skip it.
    vocab = [w for i, w in enumerate(candidates) if i % 9 != 4]
    tok = word_tokenizer(vocab)
    used = vocab[:N_WORDS]
    absorbed = [w for w in used if w[0] == "s"][:8]
    planted_world = planted(d=48)
    model = tiny_model("llama", len(tok), n_layers=2, d_model=48)
    with torch.no_grad():
        emb_VD = model.get_input_embeddings().weight
        ids = tok.convert_tokens_to_ids(["Ġ" + w for w in vocab])
        emb_VD[ids] = word_vectors(planted_world, vocab, absorbed)
    lm = LoadedModel.from_hf(model, tok, spec="tiny-planted")
    return lm, planted_world, used, absorbed


def test_planted_absorption_found_through_the_model(world):
    lm, planted_world, used, absorbed = world
    result = measure_absorption(RunModel(lm, planted_sae(planted_world, "s"), HOOK), CFG)

    assert result["n_words"] == N_WORDS and result["caveat"] is not None
    assert result["prompt"].endswith(" " + used[0])
    held_out = held_out_mask(N_WORDS, CFG.test_fraction, CFG.seed)
    expected = {w for w, t in zip(used, held_out) if t and w in absorbed}
    assert len(expected) >= 2
    s = result["letters"]["s"]
    assert s["probe"]["f1"] > 0.95 and s["main_features"] == [18]
    found = {e["word"]: e["absorbers"] for e in s["absorbed_examples"]}
    assert found == {w: [planted_world.absorber_feature(absorbed.index(w))] for w in expected}
    assert s["n_full_absorption"] == len(expected)
    assert s["full_absorption_rate"] == pytest.approx(len(expected) / s["probe_true_positives"])
    assert result["letters"]["t"]["n_absorbed"] == 0


def test_an_sae_of_another_width_or_hook_is_refused(world):
    lm, planted_world, _, _ = world
    narrow = planted_sae(planted(d=40), None)
    with pytest.raises(UserError, match="width 40"):
        measure_absorption(RunModel(lm, narrow, HOOK), CFG)
    with pytest.raises(UserError, match="blocks.7"):
        measure_absorption(RunModel(lm, planted_sae(planted_world, None),
                                    "blocks.7.hook_resid_post"), CFG)


def test_cached_prefix_gives_the_whole_prompts_activations(world):
    lm = world[0]
    words = single_token_words(lm.tokenizer, world[2], 10)
    ids_WS = word_prompts(lm.tokenizer, CFG.prefix, words)
    whole_WD = capture(lm, ids_WS, [HOOK])[HOOK][:, -1]
    cached_WD = word_activations(lm, HOOK, ids_WS[0, :-1], ids_WS[:, -1], batch_size=4)
    assert cached_WD.shape == whole_WD.shape == (10, 48)
    torch.testing.assert_close(cached_WD, whole_WD, atol=1e-5, rtol=1e-5)
