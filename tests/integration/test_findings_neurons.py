"""`monosemantic findings neurons` on a tiny random model: the rows computed again match the
store, each feature's max |r| equals a direct computation on a harvest of the MLP neurons, a
sweep's series is measured in one pass, `findings all` carries the section, the bench's
`neuron_summary` agrees with numpy, and a corpus changed since the harvest is refused."""

import json

import numpy as np
import pytest
import torch

from helpers.word_store import word_corpus
from monosemantic.activations import ActivationStore
from monosemantic.activations.harvest import HarvestConfig, harvest
from monosemantic.activations.model_rows import context_batches, special_token_ids
from monosemantic.cli import main
from monosemantic.data import CorpusConfig
from monosemantic.evals.plots import have_matplotlib
from monosemantic.findings.neuron_corr import feature_neuron_correlations, neuron_summary
from monosemantic.models import capture, load_model
from monosemantic.runs import RunDir
from monosemantic.sae import SAEConfig, create_sae, save_sae

HOOK = "blocks.1.hook_resid_post"
MLP = "blocks.1.mlp.hook_post"
WORDS = ["golden", "gate", "bridge", "sparse", "feature", "token", "model", "import", "numpy",
         "return", "value", "def", "class", "the", "quick", "brown", "fox"]


def _save_run(path, sae, model_dir, store, holdout):
    save_sae(sae, path / "sae", {"model": str(model_dir), "hook": HOOK, "store": str(store),
                                 "holdout_rows": list(holdout)})
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("neurons")
    corpus = word_corpus(root, WORDS)
    harvest(HarvestConfig(out=root / "both", model=str(tiny_model_dir), hooks=(HOOK, MLP),
                          tokens=1500, corpus=CorpusConfig(source=str(corpus), txt_unit="line"),
                          ctx_len=32, batch_size=8, dtype="float32", shard_rows=512,
                          device="cpu"))
    store = ActivationStore(root / "both" / HOOK)
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=store.d, n_features=64, k=4))
    run = _save_run(root / "run", sae, tiny_model_dir, store.path, (1000, store.n_rows))
    return root, run, sae, store


def _direct(sae, root, rows):
    """max |r| per feature from the harvested neurons (independent of the replay)."""
    x = ActivationStore(root / "both" / HOOK).take(np.arange(rows.start, rows.stop)).acts_ND
    y = ActivationStore(root / "both" / MLP).take(np.arange(rows.start, rows.stop)).acts_ND
    with torch.no_grad():
        f = sae.encode(x).numpy().astype(np.float64)
    y = y.numpy().astype(np.float64)
    live_f = f.std(axis=0) > 0
    r = np.corrcoef(np.concatenate([f[:, live_f], y], axis=1), rowvar=False)
    cross = r[:live_f.sum(), live_f.sum():]
    out = np.full(f.shape[1], np.nan)
    out[live_f] = np.abs(cross).max(axis=1)
    nn = np.abs(np.corrcoef(y, rowvar=False))
    np.fill_diagonal(nn, np.nan)
    return out, np.nanmax(nn, axis=1), (f > 0).sum(axis=0)


def test_a_run_matches_a_direct_computation(setup):
    root, run, sae, store = setup
    assert main(["findings", "neurons", str(run), "--rows", "all", "--n-tokens", "700",
                 "--device", "cpu"]) == 0
    report = json.loads((run / "findings" / "neurons.json").read_text())
    assert (run / "findings" / "neurons.png").is_file() == have_matplotlib()
    (series,) = report["series"]
    assert (series["hook"], series["mlp_hook"], series["n_tokens"]) == (HOOK, MLP, 700)
    assert series["holdout"]["rows"] == [0, 700]
    replay = series["replay"]  # float32 store, same batches: the rows come back
    assert replay["rows"] == 700 and replay["placeholders"] == 0
    assert replay["max_row_error"] < 1e-5
    want, want_nn, fires = _direct(sae, root, range(0, 700))
    (point,) = series["points"]
    got = np.array([np.nan if v is None else v for v in point["per_feature"]["max_abs_r"]])
    np.testing.assert_allclose(got, want, atol=2e-4)  # JSON keeps 4 decimals
    assert point["per_feature"]["fires"] == fires.tolist()
    got_nn = np.array(series["neurons"]["max_abs_r"], dtype=float)
    np.testing.assert_allclose(got_nn, want_nn, atol=2e-4)
    assert point["features_silent"] == int((fires == 0).sum())
    assert point["features_measured"] + point["features_silent"] \
        + point["features_constant"] == 64
    measured = want[~np.isnan(want)]
    assert point["feature_share_weak"] == pytest.approx((measured < 0.3).mean())
    assert point["feature_median_max_abs_r"] == pytest.approx(np.median(measured), abs=1e-6)
    common = ~np.isnan(want) & (fires >= 10)
    assert point["features_rare"] == int((~np.isnan(want) & (fires < 10)).sum())
    assert point["feature_share_weak_common"] == pytest.approx((want[common] < 0.3).mean())


def test_the_library_call_on_held_out_rows(setup):
    root, run, sae, store = setup
    res = feature_neuron_correlations(RunDir.open(run), n_tokens=10_000, device="cpu")
    assert res.n_tokens == store.n_rows - 1000  # every held-out row, fewer than asked
    want, _, _ = _direct(sae, root, range(1000, store.n_rows))
    np.testing.assert_allclose(res.features.max_abs_r, want, atol=1e-5)


def test_a_sweep_series_in_one_pass_and_in_findings_all(setup, tmp_path):
    root, run, _, store = setup
    out = tmp_path / "sweep"
    assert main(["sweep", str(out), "--store", str(store.path), "--n-features", "16", "32",
                 "--tokens", "1024", "--architecture", "topk", "--k", "4", "--batch-size",
                 "128", "--holdout-fraction", "0.25", "--device", "cpu", "--log-every", "4",
                 "--eval-every", "0", "--loss-recovered", "false"]) == 0
    docs = tmp_path / "docs" / "findings.md"
    assert main(["findings", "all", str(out), "--n-tokens", "300", "--rare-threshold", "0.01",
                 "--docs", str(docs)]) == 0
    report = json.loads((out / "findings" / "neurons.json").read_text())
    (series,) = report["series"]
    assert report["kind"] == "sweep" and series["n_tokens"] == 300
    assert [p["n_features"] for p in series["points"]] == [16, 32]
    lo = series["holdout"]["rows"][0]
    for p in series["points"]:
        sae = RunDir.open(out / p["run"]).load_sae()
        want, _, _ = _direct(sae, root, range(lo, lo + 300))
        got = np.array([np.nan if v is None else v for v in p["per_feature"]["max_abs_r"]])
        np.testing.assert_allclose(got, want, atol=2e-4)
    text = docs.read_text()
    assert "## Features against neurons" in text and "Not measured" not in text
    assert f"monosemantic findings neurons {out} --n-tokens 300" in text
    assert "*neurons vs other neurons*" in text
    if have_matplotlib():
        assert (docs.parent / "findings" / "neurons.png").is_file()


def test_bench_summary_agrees_with_numpy(setup, tiny_model_dir):
    root, run, sae, _ = setup
    lm = load_model(str(tiny_model_dir))
    corpus = CorpusConfig(source=str(root / "corpus"), txt_unit="line")
    batches = [b.tokens for _, b in zip(range(3), context_batches(lm, corpus, 32, 8))]
    summary = neuron_summary(RunDir.open(run).load("cpu", lm=lm), batches)
    special = torch.tensor(special_token_ids(lm.tokenizer))
    xs, ys = [], []
    for ids in batches:
        acts = capture(lm, ids, [HOOK, MLP])
        keep = ~torch.isin(ids, special)
        xs.append(acts[HOOK][keep])
        ys.append(acts[MLP][keep])
    x, y = torch.cat(xs), torch.cat(ys).numpy().astype(np.float64)
    with torch.no_grad():
        f = sae.encode(x).numpy().astype(np.float64)
    live = f.std(axis=0) > 0
    r = np.corrcoef(np.concatenate([f[:, live], y], axis=1), rowvar=False)
    best = np.abs(r[:live.sum(), live.sum():]).max(axis=1)
    assert summary["n_tokens"] == len(x) and summary["features_measured"] == live.sum()
    assert summary["feature_median_max_abs_r"] == pytest.approx(np.median(best), abs=1e-5)
    assert summary["feature_share_weak"] == pytest.approx((best < 0.3).mean())
    assert summary["mlp_hook"] == MLP


def test_special_tokens_inside_texts_are_replaced_and_counted(tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(8)) for i in range(60)]
    lines[3] = "golden gate <eos> bridge sparse feature token model"  # a special token
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    harvest(HarvestConfig(out=tmp_path / "store", model=str(tiny_model_dir), hooks=(HOOK,),
                          tokens=400, corpus=CorpusConfig(source=str(corpus), txt_unit="line",
                                                          shuffle=False),
                          ctx_len=32, batch_size=8, dtype="float32", device="cpu"))
    store = ActivationStore(tmp_path / "store")
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=store.d, n_features=16, k=2))
    run = _save_run(tmp_path / "run", sae, tiny_model_dir, store.path, (0, store.n_rows))
    res = feature_neuron_correlations(RunDir.open(run), n_tokens=400, device="cpu")
    assert res.replay is not None and res.replay["placeholders"] == 1
    assert res.replay["rows"] == res.n_tokens == store.n_rows
    # Only the rows after the replaced token in its context differ from the store.
    assert 1e-4 < res.replay["rel_error"] < 0.5
