"""`monosemantic analyze RUN --text SOURCE`: fresh text run through the model instead of the store.

The SAE (random, relu) reads `blocks.1.hook_resid_post` of a tiny Llama-family model, after
attention: a row depends on its whole context, so text agrees with the store only when it is
packed exactly as the harvest packed it (ctx_len, special tokens, contexts per forward).
"""

import dataclasses
import shutil

import pytest
import torch

from helpers.word_store import harvest_word_store
from monosemantic.analysis.sources import TextSettings, text_rows, text_settings
from monosemantic.cli import main
from monosemantic.data import CorpusConfig
from monosemantic.featuredb.reader import FeatureDB
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, save_sae

HOOK = "blocks.1.hook_resid_post"
N_FEATURES = 16
WORDS = ["golden", "gate", "bridge", "san", "francisco", "sparse", "autoencoder", "feature",
         "token", "model", "layer", "import", "numpy", "array", "return", "value", "the", "fox"]
ANALYZE = ["--batch-size", "256", "--top-k", "5", "--logit-tokens", "3", "--neighbours", "2",
           "--feature-map", "false", "--device", "cpu"]


def _save_run(run, model_dir, store_path, d_model):
    """A run whose SAE has random directions (features fire on about half the rows)."""
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=d_model, n_features=N_FEATURES))
    with torch.no_grad():
        sae.b_enc.zero_()
    save_sae(sae, run / "sae", {"model": str(model_dir), "hook": HOOK, "store": str(store_path),
                                "holdout_rows": [1300, 1500]})
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """(store run, text run, store, text args): the same SAE analysed both ways."""
    root = tmp_path_factory.mktemp("analyze_text")
    store = harvest_word_store(root, tiny_model_dir, HOOK, WORDS)
    d_model = load_model(str(tiny_model_dir)).d_model
    by_store = _save_run(root / "by_store", tiny_model_dir, store.path, d_model)
    by_text = root / "by_text"
    shutil.copytree(by_store / "sae", by_text / "sae")
    text = ["--text", str(root / "corpus"), "--corpus.txt-unit", "line",
            "--n-tokens", str(store.n_rows)]
    assert main(["analyze", str(by_store), *ANALYZE]) == 0
    assert main(["analyze", str(by_text), *ANALYZE, *text]) == 0
    return by_store, by_text, store, text


def test_text_rows_equal_the_store_rows_on_every_call(runs, tiny_model_dir):
    """The harvest's settings come from the store's manifest; the rows are bit-equal, in the
    store's order, in full batches but the last, and the same on a second call."""
    _, _, store, _ = runs
    settings = text_settings({}, store.path)
    assert (settings.ctx_len, settings.contexts_per_forward) == (32, 8)
    lm = load_model(str(tiny_model_dir))
    corpus = CorpusConfig(source=str(store.path.parent / "corpus"), txt_unit="line")
    source = text_rows(lm, corpus, HOOK, lm.d_model, settings, store.n_rows, batch_size=100)
    first, second = list(source.make_batches()), list(source.make_batches())
    assert [len(b.tokens_N) for b in first] == [100] * 15 and source.max_rows == 1500
    stored = next(iter(store.iter_rows(store.n_rows)))
    for got in (first, second):
        for name, want in zip(stored._fields, stored):
            column = torch.cat([getattr(b, name) for b in got])
            assert column.dtype == want.dtype and torch.equal(column, want), name


def test_databases_agree(runs):
    """Same rows, same seeds: the same statistics and the same examples (row, tokens, values)."""
    by_store, by_text, store, _ = runs
    with FeatureDB(by_store) as a, FeatureDB(by_text) as b:
        assert a.meta["n_tokens"] == b.meta["n_tokens"] == store.n_rows
        assert a.meta["rows"] == b.meta["rows"] == [0, store.n_rows]
        assert "store" in a.meta and "store" not in b.meta and "corpus" in b.meta["text"]
        assert b.meta["text_settings"]["ctx_len"] == 32
        stats_a, stats_b = a.stats(), b.stats()
        assert [s["count"] for s in stats_a] == [s["count"] for s in stats_b]
        assert sum(s["count"] for s in stats_a) > 0
        for key in ("max_act", "mean_act", "density"):
            assert [s[key] for s in stats_b] == pytest.approx([s[key] for s in stats_a],
                                                              rel=1e-6)
        for feat in range(N_FEATURES):
            card_a, card_b = a.feature(feat), b.feature(feat)
            assert [iv.count for iv in card_a.intervals] == [iv.count for iv in card_b.intervals]
            assert card_a.histogram == card_b.histogram
            assert card_a.logits_up == card_b.logits_up
            for kind in ("top", "random", "zero", "interval"):
                ex_a, ex_b = a.examples(feat, kind), b.examples(feat, kind)
                assert [(e.row, e.peak, e.token_ids, e.interval) for e in ex_a] == \
                    [(e.row, e.peak, e.token_ids, e.interval) for e in ex_b], (feat, kind)
                assert [e.activation for e in ex_b] == pytest.approx(
                    [e.activation for e in ex_a], rel=1e-6)


def test_text_needs_no_store(runs, tiny_model_dir, tmp_path, capsys):
    """A run whose store was deleted: the store path fails clearly, --text still works (with
    harvest's default packing, since the store's manifest went with it)."""
    by_store, _, _, text = runs
    run = _save_run(tmp_path / "run", tiny_model_dir, tmp_path / "deleted_store",
                    load_model(str(tiny_model_dir)).d_model)
    assert main(["analyze", str(run), *ANALYZE]) == 2
    assert "--text" in capsys.readouterr().err
    # Batches of 64 rows: several per forward of 8 contexts; 300 tokens end in a short one.
    assert main(["analyze", str(run), *ANALYZE[2:], "--batch-size", "64", *text[:4],
                 "--n-tokens", "300"]) == 0
    with FeatureDB(run) as db:
        assert db.meta["n_tokens"] == 300 and db.meta["rows"] == [0, 300]
        assert db.meta["text_settings"] == dataclasses.asdict(TextSettings())
        assert db.meta["text_settings"]["ctx_len"] == 256
        assert sum(s["count"] for s in db.stats()) > 0


def test_settings_of_a_streamed_run():
    """A run trained on streamed activations has no store: its training config says how."""
    extra = {"store": None, "train_config": {"ctx_len": 64, "model_dtype": "bfloat16",
                                             "stream_batch_size": 4}}
    settings = text_settings(extra, None)
    assert (settings.ctx_len, settings.model_dtype, settings.contexts_per_forward,
            settings.exclude_special) == (64, "bfloat16", 4, True)
    assert settings.torch_dtype == torch.bfloat16
    assert text_settings({"store": "/gone"}, "/gone") == TextSettings()


def test_empty_or_missing_text_is_a_clear_error(runs, tmp_path, capsys):
    by_store, _, _, _ = runs
    run = tmp_path / "run"
    shutil.copytree(by_store / "sae", run / "sae")
    assert main(["analyze", str(run), *ANALYZE, "--text", str(tmp_path / "nothing.txt")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("  \n")
    assert main(["analyze", str(run), *ANALYZE, "--text", str(tmp_path / "empty.txt")]) == 2
    assert "has no documents" in capsys.readouterr().err
    assert main(["analyze", str(run), *ANALYZE, "--corpus.source", "x.txt"]) == 2
    assert "--text x.txt" in capsys.readouterr().err
    assert main(["analyze", str(run), *ANALYZE, "--text", "x.txt", "--rows", "holdout"]) == 2
    assert "--rows" in capsys.readouterr().err
    assert not (run / "features.sqlite").exists()
