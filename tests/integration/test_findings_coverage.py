"""`monosemantic findings concepts` on a tiny real sweep (2 sizes on a store harvested from a
tiny model over code-like words): the best F1 of every concept agrees with a direct dense
computation, the coverage agrees with the F1s, and bad sweeps are refused by name."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.word_store import harvest_word_store
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.evals.plots import have_matplotlib
from monosemantic.findings.concepts import ConceptOptions, build_concepts, read_held_text
from monosemantic.findings.coverage import ConceptsConfig, CoverageOptions, measure_concepts
from monosemantic.findings.holdout import HoldoutOptions, common_holdout
from monosemantic.models import load_tokenizer
from monosemantic.runs import RunDir
from monosemantic.sweep.record import SWEEP_TABLE

HOOK = "blocks.0.hook_resid_post"
WORDS = ["import", "numpy", "os", "def", "return", "None", "self", "x", "Array", "value",
         "for", "in", "the", "Golden", "Bridge", "add"]
GRID = ["--tokens", "2560", "--architecture", "topk", "--k", "4", "--batch-size", "128",
        "--holdout-fraction", "0.25", "--device", "cpu", "--log-every", "5",
        "--eval-every", "0", "--loss-recovered", "false"]
FEW = ["--min-count", "3", "--min-fit-concepts", "5"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("concepts")
    store = harvest_word_store(root, tiny_model_dir, HOOK, WORDS, tokens=2400)
    out = root / "sweep"
    assert main(["sweep", str(out), "--store", str(store.path), "--n-features", "16", "48",
                 *GRID]) == 0
    return out


def _direct_f1(run: RunDir, rows: range, masks_CN: np.ndarray) -> np.ndarray:
    """Best F1 per concept from the dense codes of the held-out rows."""
    x_ND = run.store().take(np.arange(rows.start, rows.stop)).acts_ND
    with torch.no_grad():
        fires_NF = (run.load_sae().encode(x_ND) > 0).numpy().astype(np.int64)
    tp_CF = masks_CN.astype(np.int64) @ fires_NF
    f1_CF = 2 * tp_CF / (masks_CN.sum(1)[:, None] + fires_NF.sum(0)[None, :])
    return f1_CF.max(axis=1)


def test_concepts_agree_with_a_dense_computation(sweep):
    assert main(["findings", "concepts", str(sweep), *FEW]) == 0
    folder = sweep / "findings"
    report = json.loads((folder / "concepts.json").read_text())
    assert (folder / "concepts.png").is_file() == have_matplotlib()
    (series,) = report["series"]
    assert series["sizes"] == [16, 48] and series["hook"] == HOOK
    assert series["series"] == "topk k=4" and series["holdout"]["n_tokens"] == 600
    # The concepts again, from the store and the model's tokenizer.
    runs = [RunDir.open(sweep / name) for name in series["runs"]]
    holdout = common_holdout(runs, HoldoutOptions())
    tok = load_tokenizer(runs[0].model)
    text = read_held_text(holdout, lambda t: tok.decode([t]))
    concepts, _ = build_concepts(text, ConceptOptions(min_count=3))
    assert [c.name for c in concepts] == [c["name"] for c in series["concepts"]]
    names = {c.name for c in concepts}
    assert {"keyword:def", "class:keyword", "class:library", "capitalised:Golden"} <= names
    # a line (a document) starting with "import" makes its next word a library
    assert any(n.startswith("library:") for n in names)
    assert series["n_concepts"] == len(concepts) > 5
    masks_CN = np.zeros((len(concepts), holdout.n_tokens), dtype=bool)
    for i, c in enumerate(concepts):
        masks_CN[i, c.rows_K] = True
    for s, run in enumerate(runs):
        f1 = np.array([c["best"][s]["f1"] for c in series["concepts"]])
        np.testing.assert_allclose(f1, _direct_f1(run, holdout.rows, masks_CN), atol=1e-4)
        covered = f1 >= 0.5
        assert series["covered_share"][s] == pytest.approx(covered.mean(), abs=1e-3)
        assert sum(b["n_concepts"] for b in series["curve"]) == len(concepts)
        for c in series["concepts"]:
            b = c["best"][s]
            if b["precision"] + b["recall"] > 0:
                assert b["f1"] == pytest.approx(
                    2 * b["precision"] * b["recall"] / (b["precision"] + b["recall"]), abs=2e-4)
    freqs = [c["frequency"] for c in series["concepts"]]
    assert freqs == pytest.approx([c.count / 600 for c in concepts])
    assert len(series["fits"]["per_size"]) == 2


def test_all_writes_the_concepts_section(sweep, tmp_path):
    docs = tmp_path / "docs" / "findings.md"
    assert main(["findings", "all", str(sweep), "--rare-threshold", "0.01", *FEW,
                 "--docs", str(docs)]) == 0
    text = docs.read_text()
    assert "## Concept frequency against coverage" in text
    assert f"monosemantic findings concepts {sweep} --min-count 3 --min-fit-concepts 5" in text
    assert "| keyword |" in text and "| F=16 | F=48 |" in text
    if have_matplotlib():
        assert "(findings/concepts.png)" in text
        assert (docs.parent / "findings" / "concepts.png").is_file()
        assert f"`{HOOK}`. Dots:" in text


def _copy(sweep: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sweep"
    shutil.copytree(sweep, out, ignore=shutil.ignore_patterns("findings"))
    return out


def test_a_sweep_of_one_size_is_refused(tmp_path, sweep):
    out = _copy(sweep, tmp_path)
    lines = (out / SWEEP_TABLE).read_text().splitlines()
    (out / SWEEP_TABLE).write_text(lines[0] + "\n")
    with pytest.raises(UserError, match=r"concept coverage needs at least 2 dictionary sizes"):
        measure_concepts(ConceptsConfig(out))


def test_too_few_concepts_for_a_fit_are_refused(sweep):
    cfg = ConceptsConfig(sweep, concepts=ConceptOptions(min_count=10_000))
    with pytest.raises(UserError, match=r"only 0 concepts occur at least 10000 times.*--min-count"):
        measure_concepts(cfg)


def test_options_are_checked_before_any_work(sweep):
    with pytest.raises(UserError, match="--cover-threshold"):
        measure_concepts(ConceptsConfig(sweep, coverage=CoverageOptions(cover_threshold=0)))


def test_a_model_without_a_tokenizer_is_named(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ConceptsConfig(sweep, concepts=ConceptOptions(tokenizer=str(tmp_path / "missing")))
    with pytest.raises(UserError, match=r"needs the tokenizer of .*missing.*--tokenizer"):
        measure_concepts(cfg)
