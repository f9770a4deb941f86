"""Pretrained SAEs through the command line, on a tiny random Llama-family model: a Gemma
Scope-style params.npz (names neither model nor hook) is analysed over text, served and used
for steering by giving its folder with --model and --hook; a SAELens folder written by hand
that names both is imported with `import-sae` and analysed as a run; a SAELens transcoder
folder steers and attributes at the output hook it names or --hook-out gives."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.pretrained import (
    gemma_scope_params,
    write_gemma_scope_npz,
    write_saelens_standard,
    write_saelens_transcoder,
)
from monosemantic.cli import main
from monosemantic.featuredb.reader import FeatureDB
from monosemantic.pretrained.view import VIEWS_ENV
from monosemantic.runs import ModelOptions, RunDir

HOOK = "blocks.1.hook_resid_post"
HOOK_IN, HOOK_OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"
D, F = 32, 48
ANALYZE = ["--batch-size", "256", "--top-k", "5", "--logit-tokens", "3", "--neighbours", "2",
           "--feature-map", "false", "--device", "cpu"]
LINES = ["The Golden Gate Bridge is in San Francisco.", "import numpy as np",
         "Sparse autoencoders find features in activations.", "def add(a, b): return a + b",
         "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("pretrained_cli")
    corpus = root / "notes.txt"
    # Distinct lines: the corpus reader drops duplicate documents.
    corpus.write_text("\n".join(f"{i} {line}" for i in range(12) for line in LINES) + "\n")
    source = write_gemma_scope_npz(root / "gemma-scope" / "layer_1", gemma_scope_params(D, F))
    text = ["--text", str(corpus), "--corpus.txt-unit", "line", "--n-tokens", "400"]
    model = ["--model", str(tiny_model_dir), "--hook", HOOK]
    return root, source, text, model


@pytest.fixture(autouse=True)
def views(setup, monkeypatch):
    root = setup[0]
    monkeypatch.setenv(VIEWS_ENV, str(root / "views"))
    return root / "views"


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_analyze_a_gemma_scope_folder_needs_text(setup, capsys):
    _, source, _, model = setup
    assert main(["analyze", str(source), *model, *ANALYZE]) == 2
    err = capsys.readouterr().err
    assert "pretrained SAE" in err and "no activation store" in err and "--text" in err


def test_analyze_serve_and_steer_a_gemma_scope_folder(setup, capsys):
    _, source, text, model = setup
    before = _files(source)
    assert main(["analyze", str(source), *model, *ANALYZE, *text]) == 0
    assert _files(source) == before  # the source folder is not written to
    run = RunDir.open(source, hook=HOOK)
    with FeatureDB(run.path) as db:
        assert db.n_features == F and db.meta["n_tokens"] == 400
        assert db.meta["hook"] == HOOK and db.meta["architecture"] == "jumprelu"
        fired = [s for s in db.stats() if s["max_act"] > 0]
    assert 0 < len(fired) <= F

    from fastapi.testclient import TestClient

    from monosemantic.web.app import create_app
    from monosemantic.web.server import ServeConfig

    cfg = ServeConfig(source, device="cpu", model_options=ModelOptions(hook=HOOK))
    with TestClient(create_app(cfg)) as client:
        assert client.get(f"/api/features/{fired[0]['id']}").status_code == 200

    out = run.path.parent / "steer.json"
    feature = fired[0]["id"]
    capsys.readouterr()
    assert main(["steer", str(source), *model, "--feature", f"{feature}=5x", "--prompt",
                 "import numpy", "--max-new-tokens", "4", "--device", "cpu",
                 "--json-out", str(out)]) == 0
    assert "| steered" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["edits"] == [f"{feature}=5x"] and result["kl_next_token"] >= 0


def test_the_wrong_hook_width_is_refused(setup, tiny_model_dir, capsys):
    _, source, text, _ = setup
    args = ["analyze", str(source), "--model", str(tiny_model_dir), "--hook",
            "blocks.1.mlp.hook_post", *ANALYZE, *text]
    assert main(args) == 2
    assert "width 128 at blocks.1.mlp.hook_post, the SAE reads width 32" in \
        capsys.readouterr().err


def test_import_a_saelens_folder_written_by_hand_and_analyze_it(setup, tiny_model_dir,
                                                                 capsys):
    root, _, text, _ = setup
    folder, _ = write_saelens_standard(root / "lens", D, F, str(tiny_model_dir), HOOK)
    run = root / "imported"
    assert main(["import-sae", str(folder), str(run)]) == 0
    assert main(["analyze", str(run), *ANALYZE, *text]) == 0
    with FeatureDB(run) as db:
        assert db.n_features == F and db.meta["model"] == str(tiny_model_dir)
    # The folder itself works too: it names its model and hook, so no --model/--hook.
    assert main(["steer", str(folder), "--feature", "0=2", "--prompt", "the fox",
                 "--max-new-tokens", "2", "--device", "cpu"]) == 0


def test_eval_a_gemma_scope_folder_on_a_store_it_never_saw(setup, tiny_model_dir, capsys):
    from helpers.word_store import harvest_word_store

    root, source, _, model = setup
    store = harvest_word_store(root / "words", tiny_model_dir, HOOK, ["golden", "gate", "fox"],
                               tokens=300)
    common = ["eval", str(source), *model, "--n-contexts", "0", "--device", "cpu",
              "--plot", "false"]
    assert main(common) == 2
    assert "no activation store: give a store of its model and hook with --store" in \
        capsys.readouterr().err
    assert main([*common, "--store", str(store.path)]) == 0
    result = json.loads(RunDir.open(source, hook=HOOK).eval_path.read_text())
    # Every row: the SAE trained on none of them.
    assert result["sizes"]["reconstruction_rows"] == [0, store.n_rows]
    assert main([*common, "--store", str(store.path), "--rows", "100:250"]) == 0
    result = json.loads(RunDir.open(source, hook=HOOK).eval_path.read_text())
    assert result["sizes"]["reconstruction_rows"] == [100, 250]
    assert main([*common, "--store", str(store.path), "--rows", "100:9999"]) == 2
    assert "not a non-empty span of the store's 300 rows" in capsys.readouterr().err


def test_steer_and_attribute_a_saelens_transcoder_folder(setup, tiny_model_dir, capsys):
    from monosemantic.models import capture
    from monosemantic.steer import FeatureEdit, steering
    from monosemantic.steer.compare import prompt_ids

    root = setup[0]
    # Its cfg.json names no output hook: --hook-out gives it.
    folder, _ = write_saelens_transcoder(root / "lens-tc", D, D, F, str(tiny_model_dir),
                                         HOOK_IN, None)
    steer = ["steer", str(folder), "--feature", "3=2", "--prompt", "the fox jumps",
             "--max-new-tokens", "2", "--device", "cpu"]
    assert main(steer) == 2
    assert "--hook-out" in capsys.readouterr().err
    assert main([*steer, "--hook-out", "blocks.1.mlp.hook_post"]) == 2
    assert "width 128 at blocks.1.mlp.hook_post, the transcoder writes width 32" in \
        capsys.readouterr().err
    out = root / "tc-steer.json"
    assert main([*steer, "--hook-out", HOOK_OUT, "--json-out", str(out)]) == 0
    assert json.loads(out.read_text())["kl_next_token"] >= 0
    assert main(["attribute", str(folder), "--hook-out", HOOK_OUT, "--prompt", "the fox",
                 "--target", " jumps", "--device", "cpu", "--max-ablations", "8"]) == 0
    assert "active (feature, position) pairs" in capsys.readouterr().out

    # The view steers at its output hook with the error term kept: a no-op clamp leaves the
    # logits bit-identical, a real one changes them.
    run = RunDir.open(folder, hook_out=HOOK_OUT)
    assert run.hook_out == HOOK_OUT
    lm, sae, hook = run.load("cpu")
    ids = prompt_ids(lm, "the fox jumps over the dog")
    f_SF = sae.encode(capture(lm, ids, [hook])[hook][0])
    p = 2
    i = int(f_SF[p].argmax())
    assert f_SF[p, i] > 0

    def logits(value):
        with torch.no_grad(), steering(lm, sae, hook, [FeatureEdit(i, value, "raw")],
                                       positions=slice(p, p + 1), hook_out=run.hook_out):
            return lm.model(input_ids=ids, use_cache=False).logits

    with torch.no_grad():
        clean = lm.model(input_ids=ids, use_cache=False).logits
    assert torch.equal(logits(float(f_SF[p, i])), clean)
    assert not torch.allclose(logits(0.0), clean)
