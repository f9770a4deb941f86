"""`monosemantic eval RUN` end to end on a tiny model: harvest -> train -> eval."""

import json
import shutil

import pytest
import torch

from monosemantic.activations import ActivationStore
from monosemantic.activations.harvest import HarvestConfig, harvest
from monosemantic.cli import main
from monosemantic.data import CorpusConfig
from monosemantic.errors import UserError
from monosemantic.evals import EvalConfig, evaluate_sae, reconstruction_metrics, run_eval
from monosemantic.evals.evaluate import fresh_contexts, harvested_doc_limit
from monosemantic.evals.plots import have_matplotlib
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, load_sae
from monosemantic.sae.io import read_metadata
from monosemantic.train.trainer import TrainConfig, train

HOOK = "blocks.1.hook_resid_post"
WORDS = ("golden gate bridge san francisco sparse autoencoder feature token model layer "
         "import numpy array return value def class function the quick brown fox").split()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("eval_run")
    corpus = root / "corpus"
    corpus.mkdir()
    gen = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (12,), generator=gen))
             + f" {n}." for n in range(400)]
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    harvest(HarvestConfig(out=root / "store", model=str(tiny_model_dir), hooks=(HOOK,),
                          tokens=2000, corpus=CorpusConfig(source=str(corpus), txt_unit="line"),
                          ctx_len=32, batch_size=8, dtype="float32", shard_rows=512,
                          device="cpu"))
    return train(TrainConfig(out=root / "run", store=root / "store",
                             sae=SAEConfig(n_features=64), batch_size=128, steps=40, lr=1e-3,
                             holdout_fraction=0.2, eval_every=0, checkpoint_every=0,
                             log_every=20, device="cpu"))


def test_cli_eval_writes_report(run_dir, capsys):
    assert main(["eval", str(run_dir), "--n-contexts", "5", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    for label in ("L0", "variance explained", "NMSE", "dead (no activation in the last ",
                  "silent on the ", "dense (on > 10% of the ", "CE clean", "CE spliced",
                  "CE zero-ablated", "loss recovered", "KL", "delta CE"):
        assert label in printed
    report = json.loads((run_dir / "eval.json").read_text())
    m = report["metrics"]
    assert m["delta_ce"] == pytest.approx(m["ce_spliced"] - m["ce_clean"])
    assert m["loss_recovered"] == pytest.approx(
        (m["ce_zero"] - m["ce_spliced"]) / (m["ce_zero"] - m["ce_clean"]))
    assert m["kl"] >= 0 and 0 <= m["silent_fraction"] <= 1
    holdout = read_metadata(run_dir / "sae")["extra_metadata"]["holdout_rows"]
    sizes = report["sizes"]
    assert sizes["reconstruction_rows"] == holdout
    assert sizes["reconstruction_tokens"] == holdout[1] - holdout[0] == m["n_tokens"]
    assert m["silent_tokens"] == m["dense_tokens"] == m["n_tokens"]
    assert f"silent on the {m['n_tokens']:,} held-out tokens" in printed
    assert sizes["spliced_contexts"] == 5 and sizes["spliced_tokens"] == 5 * 32
    assert 0 < sizes["spliced_predictions"] < 5 * 31
    assert {"nmse", "variance_explained", "l0", "loss_recovered", "kl"} <= set(report["formulas"])
    hist = report["density_histogram"]
    assert sum(hist["counts"]) + hist["n_silent"] == 64 and hist["n_tokens"] == m["n_tokens"]
    assert report["config"]["n_contexts"] == 5
    assert (run_dir / "density_histogram.png").is_file() == have_matplotlib()


def test_reconstruction_matches_direct_computation(run_dir):
    meta = read_metadata(run_dir / "sae")["extra_metadata"]
    store = ActivationStore(meta["store"])
    sae = load_sae(run_dir / "sae")
    rows = range(*meta["holdout_rows"])
    result = evaluate_sae(None, sae, HOOK, store, rows=rows, n_contexts=0, row_batch_size=37)
    x_ND = torch.cat(list(store.iter_batches(10_000, shuffle=False, rows=rows)))
    with torch.no_grad():
        f_NF = sae.encode(x_ND)
        direct = reconstruction_metrics(x_ND, sae.decode(f_NF), f_NF)
    for key in ("nmse", "l0", "silent_fraction", "dense_fraction", "n_tokens"):
        assert result["metrics"][key] == pytest.approx(direct[key], rel=1e-6), key
    assert "ce_clean" not in result["metrics"]
    short = evaluate_sae(None, sae, HOOK, store, rows=rows, n_tokens=10, n_contexts=0)
    assert short["sizes"]["reconstruction_tokens"] == 10


def test_eval_json_calls_dead_only_the_trainer_figure_with_its_window(run_dir):
    report = run_eval(EvalConfig(run=run_dir, n_contexts=0, plot=False))
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["metrics"] == pytest.approx(report["metrics"], nan_ok=True)
    m = saved["metrics"]
    extra = read_metadata(run_dir / "sae")["extra_metadata"]
    final = extra["training"]["final_train"]
    # The trainer's figure, from the SAE's metadata, with the window it was counted over.
    assert m["dead_fraction"] == final["dead_fraction"]
    assert m["dead_window_tokens"] == final["dead_window_tokens"] \
        == extra["train_config"]["dead_window_tokens"] > 0
    assert m["n_dead"] == round(final["dead_fraction"] * 64)
    assert "dead_window_tokens" in saved["formulas"]["dead"]
    # No other key calls a figure dead: silence on the held-out rows is `silent_*`.
    assert {k for k in m if "dead" in k} == {"dead_fraction", "n_dead", "dead_window_tokens"}
    assert "dead" not in json.dumps(saved["density_histogram"])
    assert m["silent_tokens"] == saved["sizes"]["reconstruction_tokens"]


def test_fresh_contexts_skip_harvested_documents(run_dir, tiny_model_dir):
    store = ActivationStore(read_metadata(run_dir / "sae")["extra_metadata"]["store"])
    harvested = set(torch.cat([b.doc_ids_N for b in store.iter_rows(4096)]).tolist())
    limit = harvested_doc_limit(store)
    assert limit == max(harvested)
    contexts = list(fresh_contexts(store, load_model(str(tiny_model_dir)).tokenizer, 8))
    assert len(contexts) == 8
    doc_ids = set(torch.cat([c.doc_ids for c in contexts]).tolist()) - {-1}
    assert doc_ids and not doc_ids & harvested and min(doc_ids) == limit + 1


def test_bad_run_directories(tmp_path, run_dir):
    with pytest.raises(UserError, match="does not exist"):
        run_eval(EvalConfig(run=tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no sae/ folder"):
        run_eval(EvalConfig(run=tmp_path / "empty"))
    foreign = tmp_path / "foreign"
    shutil.copytree(run_dir / "sae", foreign / "sae")
    (foreign / "sae" / "monosemantic.json").unlink()
    with pytest.raises(UserError, match="monosemantic.json"):
        run_eval(EvalConfig(run=foreign))
    assert main(["eval", str(tmp_path / "empty")]) == 2
