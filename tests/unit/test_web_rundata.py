"""Pure helpers of the browser's run view: density histogram, cluster labels, training curves."""

import json

from monosemantic.web.rundata import _cluster_labels, density_histogram, read_curves


def test_density_histogram_bins():
    h = density_histogram([0.0, 1e-3, 0.0011, 0.5, 1.0], lo=-4, width=1.0)
    assert h["log10_edges"] == [-4, -3, -2, -1, 0] and h["n_dead"] == 1
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
