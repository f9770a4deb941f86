"""Pure helpers of the browser's run view: density histogram, cluster labels, training curves."""

import json

from monosemantic.web.overview import (
    density_histogram,
    eval_metrics,
    never_fired_rows,
    read_curves,
)
from monosemantic.web.rundata import _cluster_labels


def test_density_histogram_bins():
    h = density_histogram([0.0, 1e-3, 0.0011, 0.5, 1.0], lo=-4, width=1.0)
    assert h["log10_edges"] == [-4, -3, -2, -1, 0] and h["n_never_fired"] == 1
    assert h["counts"] == [0, 2, 0, 2]  # 1.0 goes in the top bin


def test_density_histogram_extends_below_the_default_floor():
    h = density_histogram([1e-9, 0.1], lo=-8, width=0.5)
    assert h["log10_edges"][0] == -9 and sum(h["counts"]) == 2 and h["counts"][0] == 1


def test_cluster_labels_formats():
    listed = [{"id": 0, "size": 3, "label": "def · class", "tokens": [1]},
              {"id": 1, "size": 2, "label": "numbers", "tokens": []}]
    assert _cluster_labels(listed) == {0: "def · class", 1: "numbers"}
    assert _cluster_labels({"0": "a", "2": "b"}) == {0: "a", 2: "b"}
    assert _cluster_labels(None) == {} and _cluster_labels("junk") == {}


def test_read_curves_skips_a_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"split": "train", "step": 10, "loss": 2.0, "l0": 5, "note": "x"},
            {"split": "eval", "step": 10, "variance_explained": 0.5}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"split": "tra')
    curves = read_curves(path)
    assert curves == {"train": [{"step": 10, "loss": 2.0, "l0": 5}],
                      "eval": [{"step": 10, "variance_explained": 0.5}]}
    assert read_curves(tmp_path / "missing.jsonl") == {}


def test_an_older_eval_json_never_shows_held_out_silence_as_dead():
    old = {"metrics": {"l0": 3.0, "n_tokens": 6000, "dead_fraction": 0.294, "n_dead": 1204,
                       "dense_fraction": 0.0, "n_dense": 0, "dense_threshold": 0.1}}
    m = eval_metrics(old)
    assert not [k for k in m if "dead" in k]
    assert m["silent_fraction"] == 0.294 and m["n_silent"] == 1204
    assert m["silent_tokens"] == m["dense_tokens"] == 6000
    # Without its token count, the old figure is left out rather than shown unlabelled.
    unsized = eval_metrics({"metrics": {"dead_fraction": 0.3, "dense_fraction": 0.0}})
    assert unsized == {}
    assert eval_metrics({}) is None and eval_metrics(None) is None


def test_a_current_eval_json_passes_unchanged():
    current = {"metrics": {"n_tokens": 6000, "dead_fraction": 0.043, "n_dead": 176,
                           "dead_window_tokens": 122_880, "silent_fraction": 0.294,
                           "n_silent": 1204, "silent_tokens": 6000, "dense_fraction": 0.0,
                           "dense_tokens": 6000}}
    assert eval_metrics(current) == current["metrics"]


def test_never_fired_rows_label_each_window_with_its_tokens():
    meta = {"extra_metadata": {"training": {"final_train": {"dead_fraction": 0.25,
                                                            "dead_window_tokens": 122_880}}}}
    metrics = {"silent_fraction": 0.5, "n_silent": 2, "silent_tokens": 6000}
    rows = never_fired_rows(metrics, meta, 4, 100_000, 1)
    assert [(r["key"], r["dead"], r["n"], r["tokens"]) for r in rows] == [
        ("training", True, 1, 122_880), ("analysis", True, 1, 100_000),
        ("held_out", False, 2, 6000)]
    assert [r["label"] for r in rows] == [
        "dead (no activation in the last 122,880 training tokens)",
        "never fired in the analysis (100,000 tokens)",
        "silent on 6,000 held-out tokens"]
    # An SAE without the trainer's metadata: eval.json's dead figure, if it has a window.
    rows = never_fired_rows({"dead_fraction": 0.1, "n_dead": 3, "dead_window_tokens": 500},
                            {}, 30, None, 0)
    assert [(r["key"], r["label"]) for r in rows] == [
        ("training", "dead (no activation in the last 500 training tokens)")]
    assert never_fired_rows(None, {}, 4, None, 0) == []


def test_training_settings_leave_out_options_the_architecture_ignores():
    from monosemantic.web.overview import training_settings

    cfg = {"architecture": "topk", "k": 32, "l1_coefficient": 5.0, "l0_coefficient": 1.0,
           "lr": 1e-3}
    assert training_settings(cfg) == {"architecture": "topk", "k": 32, "lr": 1e-3}
    relu = training_settings({**cfg, "architecture": "relu"})
    assert relu == {"architecture": "relu", "l1_coefficient": 5.0, "lr": 1e-3}
    jump = training_settings({**cfg, "architecture": "jumprelu"})
    assert jump == {"architecture": "jumprelu", "l0_coefficient": 1.0, "lr": 1e-3}
    unknown = training_settings({**cfg, "architecture": "future"})
    assert set(unknown) == {"architecture", "k", "l1_coefficient", "l0_coefficient", "lr"}
