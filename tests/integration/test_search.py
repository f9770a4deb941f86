"""`filter_features`, `classifier_search` and the `filter` / `classify` commands on a tiny model
whose answers are known by construction.

The SAE reads `blocks.0.hook_resid_pre` of a tiny Llama-family model (the token embedding).
The embedding row of planted token t_j is set to (1 + 0.1 j)·e_j (a basis vector) and SAE
feature j reads e_j with bias -0.5, so feature j fires exactly on token t_j, with activation
0.5 + 0.1 j; the other embedding rows are small (init std 0.02) and never reach 0.5.
"""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from monosemantic.analysis.search import classifier_search, filter_features
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, save_sae

HOOK = "blocks.0.hook_resid_pre"
N_FEATURES = 12
N_PLANTED = 8  # features 8..11 never fire
POOL = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Golden", "Gate",
        "Bridge", "San", "Francisco", "Sparse", "numpy", "return", "def", "add"]


def planted_tokens(tokenizer) -> list[int]:
    """One token per word of POOL that occurs in no other word of the pool (after a space)."""
    ids = {w: tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in POOL}
    picked = []
    for w, toks in ids.items():
        others = {t for v, ts in ids.items() if v != w for t in ts}
        unique = [t for t in toks if t not in others and t not in picked]
        if unique:
            picked.append(unique[-1])
    assert len(picked) >= N_PLANTED
    return picked[:N_PLANTED]


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("search")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokens = planted_tokens(tokenizer)
    d = model.config.hidden_size
    with torch.no_grad():
        emb_VD = model.get_input_embeddings().weight
        for j, t in enumerate(tokens):
            emb_VD[t] = 0.0
            emb_VD[t, j] = 1.0 + 0.1 * j
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    sae = create_sae(SAEConfig(architecture="relu", d_in=d, n_features=N_FEATURES))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        sae.b_dec.zero_()
        sae.b_enc.fill_(-0.5)
        for j in range(N_FEATURES):
            sae.W_enc[j, j] = 1.0 if j < N_PLANTED else 0.0
            sae.W_dec[j, j] = 1.0
    run = root / "run"
    save_sae(sae, run / "sae", {"model": str(model_dir), "hook": HOOK})
    lm = load_model(str(model_dir))
    return lm, sae, tokens, run


def token_set(lm, text):
    return set(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


def expected_hits(lm, tokens, positive, negative, thresholds):
    """Features whose planted activation beats its threshold, present in every positive and
    in no negative prompt, sorted by activation (min over positives is constant)."""
    pos = [token_set(lm, p) for p in positive]
    neg = [token_set(lm, n) for n in negative]
    hits = [j for j, t in enumerate(tokens)
            if 0.5 + 0.1 * j > thresholds[j] and all(t in s for s in pos)
            and not any(t in s for s in neg)]
    return sorted(hits, key=lambda j: -j)


def test_planted_features_fire_on_their_token_only(planted):
    from monosemantic.analysis.inspect import text_features

    lm, sae, tokens, _ = planted
    tf = text_features(lm, sae, HOOK, "the quick brown fox jumps over the lazy dog Golden Gate")
    for s, tok in enumerate(tf.token_ids):
        for j in range(N_FEATURES):
            want = 0.5 + 0.1 * j if j < N_PLANTED and tok == tokens[j] else 0.0
            assert float(tf.f_SF[s, j]) == pytest.approx(want, abs=1e-5)


POSITIVE = ["the quick brown fox", "the lazy brown fox jumps", "the brown fox over San Francisco"]
NEGATIVE = ["the quick fox", "Golden Gate Bridge"]


def test_filter_equals_construction(planted):
    lm, sae, tokens, _ = planted
    hits = filter_features(lm, sae, HOOK, POSITIVE, NEGATIVE, threshold=0.1)
    want = expected_hits(lm, tokens, POSITIVE, NEGATIVE, [0.1] * N_PLANTED)
    assert want, "the prompts must leave some planted feature to find"
    assert [h.feature for h in hits] == want
    for h in hits:
        assert h.min_positive == pytest.approx(0.5 + 0.1 * h.feature, abs=1e-5)
        assert h.mean_positive == pytest.approx(h.min_positive, abs=1e-5)
        assert h.max_negative == 0.0
    # Without negatives, features on every positive prompt but also on a negative come back.
    loose = filter_features(lm, sae, HOOK, POSITIVE, [], threshold=0.1)
    assert set(want) < {h.feature for h in loose}


def test_filter_relative_threshold(planted):
    lm, sae, tokens, _ = planted
    max_F = torch.full((N_FEATURES,), 2.0)
    max_F[N_PLANTED:] = 0.0
    # Threshold 0.4 x 2.0 = 0.8: only features whose activation 0.5 + 0.1 j exceeds it remain.
    hits = filter_features(lm, sae, HOOK, POSITIVE, [], threshold=0.4, relative_to_max=max_F)
    want = expected_hits(lm, tokens, POSITIVE, [], [0.8] * N_PLANTED)
    assert [h.feature for h in hits] == want
    assert all(0.5 + 0.1 * j > 0.8 for j in want)
    with pytest.raises(UserError, match="features"):
        filter_features(lm, sae, HOOK, POSITIVE, [], relative_to_max=torch.ones(3))
    with pytest.raises(UserError, match="positive"):
        filter_features(lm, sae, HOOK, [], NEGATIVE)


def labelled_texts(lm, tokens, feature, n=80, seed=0):
    gen = torch.Generator().manual_seed(seed)
    texts = [" ".join(["the"] + [POOL[int(i)] for i in torch.randint(1, len(POOL), (5,),
                                                                       generator=gen)])
             for _ in range(n)]
    labels = [int(tokens[feature] in token_set(lm, t)) for t in texts]
    return texts, labels


@pytest.mark.parametrize("feature", [3, 6])
def test_classifier_finds_the_planted_feature(planted, feature):
    lm, sae, tokens, _ = planted
    texts, labels = labelled_texts(lm, tokens, feature)
    assert 0.2 < sum(labels) / len(labels) < 0.8
    result = classifier_search(lm, sae, HOOK, texts, labels, l1=0.01, top=5)
    assert result.features[0][0] == feature
    assert result.features[0][1] > 0
    assert result.train_accuracy == 1.0 and result.heldout_accuracy == 1.0
    # Negated labels: the same feature, now with a negative coefficient.
    flipped = classifier_search(lm, sae, HOOK, texts, [1 - v for v in labels], l1=0.01, top=5,
                                mean=True)
    assert flipped.features[0][0] == feature and flipped.features[0][1] < 0


def test_filter_and_classify_commands(planted, tmp_path, capsys):
    lm, _sae, tokens, run = planted
    args = ["filter", str(run), "--positive", *POSITIVE, "--negative", *NEGATIVE,
            "--threshold", "0.1", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    want = expected_hits(lm, tokens, POSITIVE, NEGATIVE, [0.1] * N_PLANTED)
    assert "no feature database" in out  # the run was never analysed: raw threshold
    listed = [int(line.split()[0]) for line in out.splitlines() if line.strip()[:1].isdigit()
              and len(line.split()) == 4]
    assert listed == want
    texts, labels = labelled_texts(lm, tokens, 2)
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels)))
    out_json = tmp_path / "result.json"
    assert main(["classify", str(run), "--data", str(data), "--out", str(out_json),
                 "--device", "cpu"]) == 0
    result = json.loads(out_json.read_text())
    assert result["features"][0][0] == 2
    assert "#2" in capsys.readouterr().out
    data.write_text('{"text": "x"}\n')
    assert main(["classify", str(run), "--data", str(data), "--device", "cpu"]) == 2
    assert "data.jsonl:1" in capsys.readouterr().err
