"""`monosemantic findings` on a small real sweep (3 sizes on a tiny store): each command writes
its JSON, PNG and HTML, the numbers agree with the runs and with a direct computation, and bad
sweeps are refused by name."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers.train_data import sparse_activations, write_store
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.evals.plots import have_matplotlib
from monosemantic.findings.dead import DeadConfig, DeadOptions, measure_dead
from monosemantic.findings.holdout import HoldoutOptions
from monosemantic.findings.splitting import SplittingConfig, measure_splitting
from monosemantic.runs import RunDir
from monosemantic.sweep.record import SWEEP_TABLE, read_sweep

GRID = ["--tokens", "2560", "--architecture", "topk", "--k", "4", "--batch-size", "128",
        "--holdout-fraction", "0.25", "--device", "cpu", "--log-every", "5",
        "--eval-every", "0", "--loss-recovered", "false"]
RARE = ["--rare-threshold", "0.01"]  # 1,000 held-out tokens: fewer than 10 firings


def _store(path: Path, d: int) -> Path:
    x_ND = sparse_activations(n_rows=4000, d=d, n_true=48, active=3, seed=1)[0] * 30.0
    return write_store(path, x_ND)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("findings")
    out = root / "sweep"
    assert main(["sweep", str(out), "--store", str(_store(root / "acts", 16)),
                 "--n-features", "16", "32", "64", *GRID]) == 0
    return out


def _copy(sweep: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sweep"
    shutil.copytree(sweep, out, ignore=shutil.ignore_patterns("findings"))
    return out


def test_dead_fractions_match_the_runs_and_a_direct_count(sweep):
    assert main(["findings", "dead", str(sweep), *RARE]) == 0
    report = json.loads((sweep / "findings" / "dead.json").read_text())
    assert (sweep / "findings" / "dead.png").is_file() == have_matplotlib()
    (series,) = report["series"]
    assert series["series"] == "topk k=4" and series["holdout"]["n_tokens"] == 1000
    assert series["holdout"]["rows"] == [3000, 4000]
    records = {r.run: r for r in read_sweep(sweep)}
    assert [p["n_features"] for p in series["points"]] == [16, 32, 64]
    for p in series["points"]:
        record = records[p["run"]]
        assert (p["dead_fraction"], p["dead_window_tokens"]) == (record.dead_fraction,
                                                               record.dead_window_tokens)
        run = RunDir.open(sweep / p["run"])
        sae = run.load_sae()
        x_ND = run.store().take(np.arange(3000, 4000)).acts_ND
        fires_F = (sae.encode(x_ND) > 0).sum(dim=0).numpy()
        assert p["silent_fraction"] == pytest.approx((fires_F == 0).mean())
        assert p["ultra_rare_fraction"] == pytest.approx(((fires_F > 0) & (fires_F < 10)).mean())
    assert [p["dead_fraction"] for p in report["paper"]] == [0.02, 0.35, 0.65]


def test_dead_needs_enough_tokens_for_its_threshold(sweep):
    with pytest.raises(UserError, match="at least 10,000"):
        measure_dead(DeadConfig(sweep, HoldoutOptions(), DeadOptions(rare_threshold=1e-4)))


def _check_shares(pair):
    for measure in ("decoder", "activation"):
        for side in ("small", "large"):
            by = pair["by"][measure][side]
            assert sum(by["shares"].values()) == pytest.approx(1.0)
            assert sum(by["counts"].values()) == by["n"]
    assert pair["by"]["decoder"]["small"]["n"] + pair["by"]["decoder"]["small"]["silent"] \
        == pair["small"]["n_features"]


def _nodes(tree):
    yield tree
    for child in tree.get("children", []):
        yield from _nodes(child)


def test_splitting_writes_consistent_shares_trees_and_page(sweep):
    assert main(["findings", "splitting", str(sweep)]) == 0
    folder = sweep / "findings"
    report = json.loads((folder / "splitting.json").read_text())
    assert (folder / "splitting.png").is_file() == have_matplotlib()
    (series,) = report["series"]
    assert series["sizes"] == [16, 32, 64] and series["holdout"]["n_tokens"] == 1000
    assert [(p["small"]["n_features"], p["large"]["n_features"]) for p in series["pairs"]] \
        == [(16, 32), (32, 64)]
    for pair in series["pairs"]:
        _check_shares(pair)
        assert pair["correlation_pairs"] == "all"
    same = [v for p in series["pairs"] for v in p["same_index"].values() if v is not None]
    assert same and all(0 <= v <= 1 for v in same)
    same_index_warned = any("feature index" in w for w in series["warnings"])
    assert same_index_warned == (max(same) > 0.5)  # one seed for every size
    twins = series["decoder_twin_cosine"]
    assert len(twins) == 3 and all(-1 <= t <= 1 for t in twins)
    assert any("copies of few" in w for w in series["warnings"]) == (max(twins) > 0.9)
    first = series["pairs"][0]["by"]["decoder"]
    trees = series["families"]["trees"]
    assert len(trees) == first["small"]["n"]  # one tree per classified smallest feature
    # The children of the smallest size in the trees are exactly the non-appearing features.
    n_children = sum(len(t["children"]) for t in trees)
    assert n_children == first["large"]["n"] - first["large"]["counts"]["appear"]
    for tree in trees:
        for node in _nodes(tree):
            for child in node.get("children", []):
                assert child["n_features"] == 2 * node["n_features"]
                assert child["decoder_cosine"] >= 0.5  # the child threshold, by decoder
            if node["n_features"] < 64:
                n = len(node["children"])
                expected = "split" if n >= 2 else "vanish" if n == 0 else node["class"]
                assert node["class"] == expected and node["class"] in (
                    "split", "persist", "drift", "vanish")
    page = (folder / "splitting.html").read_text()
    assert page.startswith("<!doctype html>") and "<details>" in page and "http" not in page
    assert f"#{trees[0]['feature']}" in page


def test_all_pairs_and_candidate_correlations(sweep):
    report = measure_splitting(SplittingConfig(
        sweep, match=_match(pairs="all", max_dense_pairs=0, n_candidates=3)))
    (series,) = report["series"]
    assert len(series["pairs"]) == 3  # 16→32, 16→64, 32→64
    for pair in series["pairs"]:
        _check_shares(pair)
        assert pair["correlation_pairs"] == "top-3 by decoder cosine"


def _match(**kwargs):
    from monosemantic.findings.pairs import MatchOptions

    return MatchOptions(**kwargs)


def test_all_writes_the_generated_markdown_with_its_figures(sweep, tmp_path):
    docs = tmp_path / "docs" / "findings.md"
    assert main(["findings", "all", str(sweep), *RARE, "--docs", str(docs),
                 "--note", "made in a test"]) == 0
    text = docs.read_text()
    assert text.startswith("# Findings across dictionary sizes") and "**Generated**" in text
    assert f"monosemantic findings dead {sweep} --rare-threshold 0.01" in text
    assert f"monosemantic sweep {sweep} --store" in text and "made in a test" in text
    assert "16 → 32" in text and "Not built yet" in text
    # the synthetic store's model has no tokenizer: the concepts are reported as not measured
    assert "## Concept frequency against coverage\n\nNot measured: " in text
    assert "tokenizer of 'synthetic'" in text
    # The synthetic store has no corpus to run a model over: said, not hidden.
    assert "## Features against neurons" in text and "records no context length" in text
    if have_matplotlib():
        assert "(findings/dead.png)" in text and (docs.parent / "findings" / "dead.png").is_file()
    assert (docs.parent / "findings" / "splitting.html").is_file()
    assert "(findings/splitting.html)" in text
    assert (sweep / "findings" / "findings.md").is_file()


def test_a_sweep_of_one_size_cannot_show_splitting(tmp_path, sweep):
    out = _copy(sweep, tmp_path)
    lines = (out / SWEEP_TABLE).read_text().splitlines()
    (out / SWEEP_TABLE).write_text(lines[0] + "\n")
    with pytest.raises(UserError, match=r"at least 2 dictionary sizes.*f16_t2560_k4"):
        measure_splitting(SplittingConfig(out))


def test_a_run_without_its_sae_is_named(tmp_path, sweep):
    out = _copy(sweep, tmp_path)
    shutil.rmtree(out / "f32_t2560_k4" / "sae")
    assert main(["findings", "dead", str(out), *RARE]) == 2
    with pytest.raises(UserError, match=r"run f32_t2560_k4 of the sweep .* no sae/ folder"):
        measure_splitting(SplittingConfig(out))


def test_runs_on_another_hook_or_width_are_named(tmp_path, sweep):
    out = _copy(sweep, tmp_path)
    meta_path = out / "f64_t2560_k4" / "sae" / "monosemantic.json"
    meta = json.loads(meta_path.read_text())
    meta["extra_metadata"]["hook"] = "blocks.1.hook_resid_post"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"run f64_t2560_k4 .* hook 'blocks.1.hook_resid_post'"):
        measure_splitting(SplittingConfig(out))
    # A run of another width, trained on another store, added to the sweep's table.
    other = tmp_path / "narrow"
    assert main(["sweep", str(other), "--store", str(_store(tmp_path / "acts8", 8)),
                 "--n-features", "24", *GRID]) == 0
    out = _copy(sweep, tmp_path / "wide")
    shutil.copytree(other / "f24_t2560_k4", out / "f24_t2560_k4")
    with (out / SWEEP_TABLE).open("a") as table:
        table.write((other / SWEEP_TABLE).read_text())
    with pytest.raises(UserError, match=r"run f24_t2560_k4 was trained on width d 8"):
        measure_dead(DeadConfig(out, dead=DeadOptions(rare_threshold=0.01)))


def test_streamed_codes_agree_with_dense_encoding(sweep):
    """The pass's firing counts are those of the dense codes (the codes are the SAE's)."""
    report = measure_splitting(SplittingConfig(sweep, HoldoutOptions(n_tokens=300,
                                                                     batch_rows=77)))
    (series,) = report["series"]
    assert series["holdout"]["rows"] == [3000, 3300]
    run = RunDir.open(sweep / series["runs"][0])
    x_ND = run.store().take(np.arange(3000, 3300)).acts_ND
    fires_F = (run.load_sae().encode(x_ND) > 0).sum(dim=0)
    silent = int((fires_F == 0).sum())
    assert series["pairs"][0]["by"]["decoder"]["small"]["silent"] == silent
    tree_freq = {t["feature"]: t["frequency"] for t in series["families"]["trees"]}
    for f, freq in tree_freq.items():
        assert freq == pytest.approx(float(fires_F[f]) / 300)


def test_thresholds_out_of_order_are_refused_before_any_work(sweep, monkeypatch):
    from monosemantic.findings import splitting

    def no_work(*args, **kwargs):
        raise AssertionError("runs were opened")

    monkeypatch.setattr(splitting, "select_series", no_work)
    with pytest.raises(UserError, match="--child-threshold"):
        measure_splitting(SplittingConfig(sweep, match=_match(child_threshold=0.9,
                                                              persist_threshold=0.5)))
