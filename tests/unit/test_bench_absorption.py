"""The absorption metric on planted activations: words, main-feature rule, per-word scores, and
the whole metric finding (or not finding) planted absorption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from helpers.absorption import planted, planted_sae, word_tokenizer, word_vectors
from monosemantic.bench.absorption import (
    AbsorptionConfig,
    absorption_from_activations,
    held_out_mask,
)
from monosemantic.bench.absorption_probes import grow_main_features
from monosemantic.bench.absorption_scores import Thresholds, score_word
from monosemantic.bench.words import Word, single_token_words, word_prompts
from monosemantic.config import ConfigError, field_docs
from monosemantic.errors import UserError

SAEBENCH = Thresholds(absorber_cos=0.1, full_cos=0.025, projection_share=0.4, max_absorbers=3)


def test_single_token_words_keep_order_skip_other_words_and_stop_at_n():
    tok = word_tokenizer(["of", "the", "cat", "dog"])
    words = single_token_words(tok, ["the", "zebra", "of", "cat", "dog"], n_words=3)
    assert [w.text for w in words] == ["the", "of", "cat"]
    assert [w.token for w in words] == [tok.convert_tokens_to_ids("Ġ" + w.text) for w in words]


def test_no_single_token_word_is_a_user_error():
    with pytest.raises(UserError, match="single token"):
        single_token_words(word_tokenizer(["zyzzyva"]), ["the", "of"], n_words=10)


def test_prompts_are_the_prefix_then_the_word():
    tok = word_tokenizer(["has", "cat", "dog"])
    ids_WS = word_prompts(tok, " has has", [Word("cat", 5), Word("dog", 6)])
    has = tok.convert_tokens_to_ids("Ġhas")
    assert ids_WS.tolist() == [[has, has, 5], [has, has, 6]]


def test_main_features_grow_while_f1_jumps_and_stop_at_the_first_small_step():
    f1 = {1: 0.5, 2: 0.6, 3: 0.62, 4: 0.95}
    assert grow_main_features(f1.__getitem__, 4, 0.03) == (2, [0.5, 0.6, 0.62])
    assert grow_main_features(f1.__getitem__, 1, 0.03) == (1, [0.5])
    assert grow_main_features({1: 0.1, 2: 0.2}.__getitem__, 2, 0.03)[0] == 2


def test_score_word_partial_full_and_none():
    cos_F = np.array([0.9, 0.5, 0.05, 0.6])
    codes_F = np.array([1.0, 1.8, 3.0, 0.0])
    proj_F = np.array([1.0, 0.9, 0.15, 0.0])
    partial = score_word("w", codes_F, proj_F, 2.0, cos_F, [0], SAEBENCH)
    # main carries 1.0 of 2.0; feature 1 (cos 0.5) carries 0.9 (share 0.45 >= 0.4); feature 2's
    # cosine is under 0.1.
    assert partial.fraction == pytest.approx(0.9 / 1.9)
    assert (partial.full, partial.absorbers) == (False, [1])
    silent = codes_F.copy()
    silent[0] = 0.0
    full = score_word("w", silent, np.array([0.0, 0.9, 0.15, 0.0]), 2.0, cos_F, [0], SAEBENCH)
    assert (full.fraction, full.full, full.absorbers) == (1.0, True, [1])
    weak = score_word("w", codes_F, np.array([1.0, 0.5, 0.15, 0.0]), 2.0, cos_F, [0], SAEBENCH)
    assert (weak.fraction, weak.full, weak.absorbers) == (0.0, False, [])
    assert score_word("w", silent, proj_F, -1.0, cos_F, [0], SAEBENCH).fraction == 0.0


def test_every_config_field_has_a_docstring():
    docs = field_docs(AbsorptionConfig)
    assert [f.name for f in dataclasses.fields(AbsorptionConfig) if not docs.get(f.name)] == []


def test_config_rejects_letters_outside_a_to_z():
    with pytest.raises(ConfigError, match="letters"):
        AbsorptionConfig(letters="sS")
    with pytest.raises(ConfigError, match="test_fraction"):
        AbsorptionConfig(test_fraction=1.0)


def _world_words() -> list[str]:
    counts = {"s": 200, "t": 100, "a": 40, "b": 40, "c": 40, "d": 40, "e": 40}
    return [f"{letter}{i:03d}" for letter, n in counts.items() for i in range(n)]


CFG = AbsorptionConfig(letters="st", test_fraction=0.5, min_true_positives=5, n_examples=20)


def test_planted_absorption_is_found_word_by_word():
    world = planted()
    words = _world_words()
    absorbed = words[:world.n_absorbers]  # s000 ... s007
    acts_WD = word_vectors(world, words, absorbed)
    result = absorption_from_activations(words, acts_WD, planted_sae(world, "s"), CFG)

    held_out = held_out_mask(len(words), CFG.test_fraction, CFG.seed)
    expected = {w for w, t in zip(words, held_out) if t and w in absorbed}
    n_test_s = sum(t for w, t in zip(words, held_out) if w[0] == "s")
    assert len(expected) >= 2  # the split holds some absorbed words (else the test is empty)
    s = result["letters"]["s"]
    assert s["probe"]["f1"] == 1.0 and s["probe_true_positives"] == n_test_s
    assert s["main_features"] == [18]  # "s"'s own feature, not an absorber
    assert s["main_features_f1"] == s["sparse_probe_f1_by_k"][0] < 1.0
    assert s["n_full_absorption"] == s["n_absorbed"] == len(expected)
    assert s["full_absorption_rate"] == pytest.approx(len(expected) / n_test_s)
    assert s["mean_absorption_fraction"] == pytest.approx(len(expected) / n_test_s)
    found = {e["word"]: e["absorbers"] for e in s["absorbed_examples"]}
    assert found == {w: [world.absorber_feature(absorbed.index(w))] for w in expected}
    assert all(a["probe_cos"] > 0.5 and a["n_words"] == 1 for a in s["absorbers"])

    t = result["letters"]["t"]
    assert t["main_features"] == [19]
    assert (t["mean_absorption_fraction"], t["full_absorption_rate"]) == (0.0, 0.0)
    assert result["letters_included"] == ["s", "t"]
    assert result["mean_full_absorption_rate"] == pytest.approx(len(expected) / n_test_s / 2)
    assert json.loads(json.dumps(result)) == result  # plain JSON types only
    assert result["shared_absorbers"] == {}


def test_no_absorbing_feature_means_rate_zero():
    world = planted()
    words = _world_words()
    acts_WD = word_vectors(world, words, words[:world.n_absorbers])
    result = absorption_from_activations(words, acts_WD, planted_sae(world, None), CFG)
    for letter in "st":
        r = result["letters"][letter]
        assert r["probe_true_positives"] > 0
        assert (r["n_absorbed"], r["mean_absorption_fraction"], r["absorbers"]) == (0, 0.0, [])
    assert result["mean_absorption_fraction"] == 0.0
    assert result["mean_full_absorption_rate"] == 0.0


def test_letters_without_enough_evidence_are_reported_but_left_out_of_the_means():
    world = planted()
    words = _world_words()
    cfg = AbsorptionConfig(letters="sz", test_fraction=0.5, min_true_positives=500)
    result = absorption_from_activations(words, word_vectors(world, words, []),
                                         planted_sae(world, None), cfg)
    assert "no words" in result["letters"]["z"]["excluded_because"]
    only_s = [w for w in words if w[0] == "s"]
    alone = absorption_from_activations(only_s, word_vectors(world, only_s, []),
                                        planted_sae(world, None), cfg)
    assert alone["letters"]["s"]["excluded_because"] == "no train words of other letters"
    assert "true positives" in result["letters"]["s"]["excluded_because"]
    assert result["letters"]["s"]["probe"]["f1"] == 1.0
    assert result["letters_included"] == [] and result["mean_absorption_fraction"] is None


def test_activation_width_must_match_the_sae():
    world = planted()
    with pytest.raises(UserError, match="width"):
        absorption_from_activations(["sun"], torch.zeros(1, world.d + 1),
                                    planted_sae(world, None), CFG)
