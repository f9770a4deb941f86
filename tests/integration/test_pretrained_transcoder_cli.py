"""`analyze` and `eval` of pretrained transcoders through the command line, on a tiny random
Llama-family model: a SAELens transcoder folder that names no output hook and a Gemma Scope 2
transcoder folder (config.json naming Gemma's pre- and post-MLP norm outputs) are analysed
over text into a feature database and evaluated on a two-hook harvest: the metrics are the
target site's (checked against a reference computed from the stores) and the spliced loss
replaces hook_mlp_out by the prediction from hook_mlp_in."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers.pretrained import (
    gemma_scope_2_transcoder_config,
    gemma_scope_transcoder_params,
    write_gemma_scope_safetensors,
    write_saelens_transcoder,
)
from helpers.word_store import word_corpus
from monosemantic.cli import main
from monosemantic.featuredb.reader import FeatureDB
from monosemantic.pretrained.view import VIEWS_ENV
from monosemantic.runs import RunDir

D, F = 32, 48
HOOK_IN, HOOK_OUT = "blocks.0.hook_mlp_in", "blocks.0.hook_mlp_out"
HOOKS = ["--hook", HOOK_IN, "--hook-out", HOOK_OUT]
ANALYZE = ["--batch-size", "256", "--top-k", "5", "--logit-tokens", "3", "--neighbours", "2",
           "--feature-map", "false", "--device", "cpu"]
WORDS = ["golden", "gate", "bridge", "fox", "import", "numpy", "sparse", "features", "the"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    from monosemantic.activations.harvest import HarvestConfig, harvest
    from monosemantic.data import CorpusConfig

    root = tmp_path_factory.mktemp("pretrained_tc_cli")
    corpus = word_corpus(root, WORDS)
    harvest(HarvestConfig(out=root / "acts", model=str(tiny_model_dir), hooks=(HOOK_IN, HOOK_OUT),
                          tokens=300, corpus=CorpusConfig(source=str(corpus), txt_unit="line"),
                          ctx_len=32, batch_size=8, dtype="float32", shard_rows=512,
                          device="cpu"))
    lens, _ = write_saelens_transcoder(root / "lens-tc", D, D, F, str(tiny_model_dir), HOOK_IN,
                                       None, seed=1)
    params = gemma_scope_transcoder_params(D, D, F, skip=True, seed=2)
    gemma = write_gemma_scope_safetensors(
        root / "transcoder_all" / "layer_0_width_16k_l0_big_affine", params,
        gemma_scope_2_transcoder_config(0, "google/gemma-3-270m-pt", F, True))
    text = ["--text", str(corpus / "text.txt"), "--corpus.txt-unit", "line", "--n-tokens", "300"]
    return root, {"saelens": lens, "gemma-scope": gemma}, text


@pytest.fixture(autouse=True)
def views(setup, monkeypatch):
    monkeypatch.setenv(VIEWS_ENV, str(setup[0] / "views"))


@pytest.mark.parametrize("layout", ["saelens", "gemma-scope"])
def test_analyze_a_pretrained_transcoder_over_text(setup, tiny_model_dir, layout):
    _, folders, text = setup
    source = folders[layout]
    model = ["--model", str(tiny_model_dir), *HOOKS]
    assert main(["analyze", str(source), *model, *ANALYZE, *text]) == 0
    run = RunDir.open(source, hook=HOOK_IN, hook_out=HOOK_OUT)
    assert run.pretrained["layout"] == layout and run.db_path.is_file()
    with FeatureDB(run.path) as db:
        assert db.n_features == F and db.meta["n_tokens"] == 300
        assert (db.meta["hook"], db.meta["hook_out"]) == (HOOK_IN, HOOK_OUT)
        fired = [s for s in db.stats() if s["max_act"] > 0]
    assert 0 < len(fired) <= F


@pytest.mark.parametrize("layout", ["saelens", "gemma-scope"])
def test_eval_a_pretrained_transcoder_on_its_target_site(setup, tiny_model_dir, layout):
    from monosemantic.activations import ActivationStore

    root, folders, _ = setup
    source = folders[layout]
    store_in = root / "acts" / HOOK_IN
    assert main(["eval", str(source), "--model", str(tiny_model_dir), *HOOKS, "--store",
                 str(store_in), "--n-contexts", "2", "--device", "cpu", "--plot", "false"]) == 0
    run = RunDir.open(source, hook=HOOK_IN, hook_out=HOOK_OUT)
    result = json.loads(run.eval_path.read_text())
    assert (result["hook"], result["hook_out"]) == (HOOK_IN, HOOK_OUT)
    metrics = result["metrics"]

    # The reference: every row of the input store predicted, compared with the target store.
    x_ND = torch.cat(list(ActivationStore(store_in).iter_batches(512, shuffle=False)))
    y_ND = torch.cat(list(ActivationStore(root / "acts" / HOOK_OUT).iter_batches(
        512, shuffle=False)))
    assert result["sizes"]["reconstruction_rows"] == [0, len(x_ND)]
    tc = run.load_sae()
    with torch.no_grad():
        y_hat = tc.reconstruct(x_ND)
        l0 = float((tc.encode(x_ND) > 0).float().sum(1).mean())
    assert math.isclose(metrics["mse"], float(((y_ND - y_hat) ** 2).sum(1).mean()), rel_tol=1e-4)
    assert math.isclose(metrics["l0"], l0, rel_tol=1e-6)

    # Spliced in at hook_mlp_out, from hook_mlp_in of the same forward.
    assert result["sizes"]["spliced_contexts"] == 2
    for key in ("ce_clean", "ce_spliced", "ce_zero", "loss_recovered", "kl"):
        assert math.isfinite(metrics[key])
    assert metrics["ce_spliced"] != metrics["ce_clean"] and metrics["kl"] > 0
