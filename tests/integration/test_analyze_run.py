"""`monosemantic analyze / feature / inspect` end to end on a tiny model and a planted SAE.

The SAE reads `blocks.0.hook_resid_pre` (the token embeddings of a Llama-family model, so a
row's activation is a function of its token alone). Feature 0 is planted to fire exactly on one
token id; the other features are random directions.
"""

import json
import sqlite3

import pytest
import torch

from monosemantic.activations import ActivationStore
from monosemantic.activations.harvest import HarvestConfig, harvest
from monosemantic.cli import main
from monosemantic.data import CorpusConfig
from monosemantic.errors import UserError
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, load_sae, save_sae
from monosemantic.store.featuredb import FeatureDB
from monosemantic.store.schema import DB_FILENAME

HOOK = "blocks.0.hook_resid_pre"
N_FEATURES = 24
WORDS = ["golden", "gate", "bridge", "san", "francisco", "sparse", "autoencoder", "feature", "token", "model", "layer", "import", "numpy", "array", "return", "value", "def", "class", "function", "the", "quick", "brown", "fox"]


def planted_sae(lm, store):
    """Feature 0 fires only on the most frequent token of the store (margin-separated)."""
    tokens_N = torch.cat([b.tokens_N for b in store.iter_rows(4096)])
    target = int(torch.mode(tokens_N).values)
    emb_VD = lm.model.get_input_embeddings().weight.detach()
    unit_D = emb_VD[target] / emb_VD[target].norm()
    scores = emb_VD[torch.unique(tokens_N)] @ unit_D
    others = scores[torch.unique(tokens_N) != target]
    threshold = float(others.max() + (scores.max() - others.max()) / 2)
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=lm.d_model, n_features=N_FEATURES))
    with torch.no_grad():
        sae.W_dec[0] = unit_D
        sae.W_enc[:, 0] = unit_D
        sae.b_enc[0] = -threshold
        sae.b_enc[1:] = 0.0  # random features fire on about half the tokens
    return sae, target


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("analyze_run")
    corpus = root / "corpus"
    corpus.mkdir()
    gen = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (10,), generator=gen))
             for _ in range(200)]
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    harvest(HarvestConfig(out=root / "store", model=str(tiny_model_dir), hooks=(HOOK,),
                          tokens=1500, corpus=CorpusConfig(source=str(corpus), txt_unit="line"),
                          ctx_len=32, batch_size=8, dtype="float32", shard_rows=512,
                          device="cpu"))
    store = ActivationStore(root / "store")
    lm = load_model(str(tiny_model_dir))
    sae, target = planted_sae(lm, store)
    run = root / "run"
    save_sae(sae, run / "sae", {"model": str(tiny_model_dir), "hook": HOOK,
                                "store": str(root / "store"),
                                "holdout_rows": [store.n_rows - 200, store.n_rows]})
    assert main(["analyze", str(run), "--batch-size", "256", "--top-k", "6",
                 "--logit-tokens", "4", "--neighbours", "3", "--feature-map", "false",
                 "--device", "cpu"]) == 0
    return run, target, store


def test_planted_feature_in_database(run_dir):
    run, target, store = run_dir
    tokens_N = torch.cat([b.tokens_N for b in store.iter_rows(4096)])
    with FeatureDB(run) as db:
        card = db.feature(0)
        assert db.meta["n_tokens"] == store.n_rows
    assert card.count == int((tokens_N == target).sum()) > 0
    assert card.density == pytest.approx(card.count / store.n_rows)
    assert len(card.top) == 6
    for ex in card.top:
        assert ex.token_ids[ex.peak] == target and int(tokens_N[ex.row]) == target
        # The feature fires on every occurrence of its token in the window, nowhere else.
        assert [a > 0 for a in ex.acts] == [t == target for t in ex.token_ids]
    assert sum(iv.share for iv in card.intervals) == pytest.approx(1.0)
    assert sum(iv.count for iv in card.intervals) == card.count
    assert all(ex.token_ids[ex.peak] != target or ex.acts[ex.peak] == 0 for ex in card.zero)
    assert [t for t, _ in card.logits_up] and len(card.neighbours["decoder_cosine"]) == 3


def test_database_equals_brute_force_on_the_store(run_dir):
    run, _, store = run_dir
    sae = load_sae(run / "sae")
    with torch.no_grad():
        f_NF = sae.encode(torch.cat([b.acts_ND for b in store.iter_rows(4096)]))
    with FeatureDB(run) as db:
        stats = db.stats()
        for feat in (0, 5, 17):
            top = db.examples(feat, "top")
            assert len(top) == 6
            # Ties (feature 0 has one value) are broken by corpus order.
            neg_vals, rows = torch.sort(-f_NF[:, feat], stable=True)
            vals, rows = -neg_vals[: len(top)], rows[: len(top)]
            assert [ex.row for ex in top] == rows.tolist()
            assert [ex.activation for ex in top] == pytest.approx(vals.tolist(), rel=1e-5)
    assert [s["count"] for s in stats] == (f_NF > 0).sum(0).tolist()
    assert [s["max_act"] for s in stats] == pytest.approx(f_NF.max(0).values.tolist(), rel=1e-5)


def test_feature_card_cli_plain(run_dir, capsys):
    run, _target, _ = run_dir
    assert main(["feature", str(run), "0", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Feature 0") and "[[" in out and "\x1b[" not in out
    assert "Activation intervals" in out and "%" in out and "Logit effects" in out
    assert main(["feature", str(run), "0", "--color", "always"]) == 0
    assert "\x1b[48;5;" in capsys.readouterr().out


def test_unknown_feature_and_schema_version_are_clear(run_dir, tmp_path, capsys):
    run, _, _ = run_dir
    assert main(["feature", str(run), str(N_FEATURES)]) == 2
    assert "is not in" in capsys.readouterr().err
    copy = tmp_path / DB_FILENAME
    copy.write_bytes((run / DB_FILENAME).read_bytes())
    con = sqlite3.connect(copy)
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(99),))
    con.close()
    with pytest.raises(UserError, match="schema version 99"):
        FeatureDB(copy)
    with pytest.raises(UserError, match="analyze"):
        FeatureDB(tmp_path / "nothing")


def test_inspect_lists_the_planted_feature_on_its_token(run_dir, capsys, tiny_model_dir):
    run, target, _ = run_dir
    lm = load_model(str(tiny_model_dir))
    word = lm.tokenizer.decode([target])
    assert main(["inspect", str(run), f"the{word} and{word}", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    hits = [ln for ln in lines if ln.startswith(repr(word))]
    assert hits and all("#0 " in ln.split("  ", 1)[1] for ln in hits)
    assert not any(ln.startswith(repr("<bos>")) for ln in lines)
