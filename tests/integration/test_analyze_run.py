"""`monosemantic analyze / feature / inspect` end to end on a tiny model and a planted SAE.

The SAE reads `blocks.0.hook_resid_pre` (the token embeddings of a Llama-family model, so a
row's activation is a function of its token alone). Feature 0 is planted to fire exactly on one
token id; the other features are random directions.
"""

import json
import shutil
import sqlite3

import pytest
import torch

from helpers.feature_db import db_rows
from helpers.word_store import harvest_word_store
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.featuredb.reader import FeatureDB
from monosemantic.featuredb.schema import DB_FILENAME
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, load_sae, save_sae

HOOK = "blocks.0.hook_resid_pre"
N_FEATURES = 24
ANALYZE_ARGS = ["--batch-size", "256", "--top-k", "6", "--logit-tokens", "4", "--neighbours", "3",
                "--feature-map", "false", "--device", "cpu"]
WORDS = ["golden", "gate", "bridge", "san", "francisco", "sparse", "autoencoder", "feature",
         "token", "model", "layer", "import", "numpy", "array", "return", "value", "def", "class",
         "function", "the", "quick", "brown", "fox"]


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
    store = harvest_word_store(root, tiny_model_dir, HOOK, WORDS)
    lm = load_model(str(tiny_model_dir))
    sae, target = planted_sae(lm, store)
    run = root / "run"
    save_sae(sae, run / "sae", run_extra(tiny_model_dir, root, store))
    assert main(["analyze", str(run), *ANALYZE_ARGS]) == 0
    return run, target, store


def run_extra(tiny_model_dir, root, store) -> dict:
    return {"model": str(tiny_model_dir), "hook": HOOK, "store": str(root / "store"),
            "holdout_rows": [store.n_rows - 200, store.n_rows]}


def db_tables(run) -> dict[str, list[tuple]]:
    """Every row of every table of RUN's database; meta without what names the run or depends
    on the options and the clock."""
    return db_rows(run / DB_FILENAME, ("run", "sae", "pass_seconds", "pass_state_bytes",
                                       "feature_slice", "config", "options"))


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_feature_slices_write_the_same_database(run_dir, tmp_path, tiny_model_dir,
                                                architecture):
    run, _, store = run_dir
    if architecture == "topk":  # a random topk SAE, analysed unsliced first
        torch.manual_seed(1)
        sae = create_sae(SAEConfig(architecture="topk", d_in=store.d, n_features=N_FEATURES,
                                   k=4))
        run = tmp_path / "topk"
        save_sae(sae, run / "sae", run_extra(tiny_model_dir, run_dir[0].parent, store))
        assert main(["analyze", str(run), *ANALYZE_ARGS]) == 0
    sliced = tmp_path / "sliced"
    shutil.copytree(run / "sae", sliced / "sae")
    assert main(["analyze", str(sliced), *ANALYZE_ARGS, "--feature-slice", "5"]) == 0
    want, got = db_tables(run), db_tables(sliced)
    assert want["examples"] and want["logit_effects"] and want["neighbours"]
    for table in want:
        assert got[table] == want[table], table
    with FeatureDB(sliced) as db:
        assert db.meta["feature_slice"] == 5
        assert db.meta["pass_state_bytes"] < FeatureDB(run).meta["pass_state_bytes"] / 3


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


def test_cooccurrence_neighbours_equal_brute_force(run_dir):
    run, _, store = run_dir
    sae = load_sae(run / "sae")
    with torch.no_grad():
        f_NF = sae.encode(torch.cat([b.acts_ND for b in store.iter_rows(4096)]))
    B_NF = (f_NF > 0).double()  # the store is shorter than --cooccur-tokens: exact counts
    C_FF = B_NF.T @ B_NF
    c_F = C_FF.diag()
    with FeatureDB(run) as db:
        assert db.clusters() == [] and db.map_coords() == []  # --feature-map false
        for feat in range(N_FEATURES):
            got = db.neighbours(feat, "cooccurrence")
            cands = sorted((-float(C_FF[feat, j] / (c_F[feat] * c_F[j]).sqrt()), j)
                           for j in range(N_FEATURES) if j != feat and C_FF[feat, j] >= 3)
            want = [(j, -s) for s, j in cands[:10]]
            assert [o for o, _ in got] == [j for j, _ in want]
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
        assert db.feature(1).neighbours["cooccurrence"] == db.neighbours(1, "cooccurrence")


def test_filter_uses_the_database_maxima(run_dir, capsys, tiny_model_dir):
    run, target, _ = run_dir
    lm = load_model(str(tiny_model_dir))
    word = lm.tokenizer.decode([target])
    negative = next(w for w in ("quick brown fox", "sparse model", "numpy array", "1 2 3")
                    if target not in lm.tokenizer(w, add_special_tokens=False)["input_ids"])
    assert main(["filter", str(run), "--positive", f"the{word} and{word}", f"and{word}",
                 "--negative", negative, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "no feature database" not in out and "of max" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit() and "of max" in ln]
    assert "0" in [r[0] for r in rows]


@pytest.mark.slow
def test_feature_map_clusters_and_labels(run_dir, tmp_path):
    """UMAP (numba-compiled on first use, slow) + k-means clusters + labels in the database."""
    import shutil

    run, _, _ = run_dir
    copy = tmp_path / "run"
    shutil.copytree(run / "sae", copy / "sae")
    assert main(["analyze", str(copy), "--batch-size", "256", "--top-k", "4", "--n-intervals",
                 "0", "--logit-tokens", "3", "--neighbours", "2", "--n-clusters", "3",
                 "--device", "cpu"]) == 0
    with FeatureDB(copy) as db:
        coords = db.map_coords()
        clusters = db.clusters()
    assert [c[0] for c in coords] == list(range(N_FEATURES))
    assert {c[3] for c in coords} == {0, 1, 2}
    assert [c["id"] for c in clusters] == [0, 1, 2]
    assert sum(c["size"] for c in clusters) == N_FEATURES
    assert all(c["label"] for c in clusters)
