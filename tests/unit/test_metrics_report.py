"""The eval report's table, strict-JSON output and the optional density plot."""

import json
import math
from pathlib import Path

import pytest

from monosemantic.evals import plots
from monosemantic.evals.report import EvalConfig, format_table, write_json

HIST = {"bin_edges": [-3.0, -2.0, -1.0, 0.0], "counts": [1, 0, 2], "n_silent": 1,
        "n_tokens": 1000}


def test_table_rows_and_nan():
    table = format_table({"l0": 12.345, "nmse": 0.25, "silent_fraction": 0.125,
                          "loss_recovered": math.nan, "delta_ce": 0.01})
    lines = table.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("L0") and lines[0].endswith("12.35")
    assert "12.50%" in table and "+0.0100" in table
    assert "loss recovered" in table and table.count("n/a") == 1
    # A figure whose token count is missing says so rather than dropping it.
    assert "silent on the ? held-out tokens" in table


def test_table_labels_dead_silent_and_dense_with_their_token_counts():
    table = format_table({"dead_fraction": 0.043, "dead_window_tokens": 122_880,
                          "silent_fraction": 0.294, "silent_tokens": 6000,
                          "dense_fraction": 0.0, "dense_threshold": 0.1, "dense_tokens": 6000})
    lines = table.splitlines()
    assert lines[0].startswith("dead (no activation in the last 122,880 training tokens)")
    assert lines[0].endswith("4.30%")
    assert lines[1].startswith("silent on the 6,000 held-out tokens")
    assert lines[1].endswith("29.40%")
    assert lines[2].startswith("dense (on > 10% of the 6,000 held-out tokens)")
    assert "dead" not in lines[1]


def test_json_has_no_nan(tmp_path):
    path = tmp_path / "eval.json"
    write_json(path, {"metrics": {"loss_recovered": math.nan, "kl": math.inf, "l0": 3.0},
                      "rows": [1.0, math.nan]})
    data = json.loads(path.read_text())  # strict JSON: NaN/inf became null
    assert data == {"metrics": {"loss_recovered": None, "kl": None, "l0": 3.0}, "rows": [1.0, None]}
    assert not list(tmp_path.glob(".*.tmp"))


def test_plot_written_or_skipped(tmp_path, monkeypatch):
    if plots.have_matplotlib():
        out = plots.plot_density_histogram(HIST, tmp_path / "h.png", title="t")
        assert out == tmp_path / "h.png"
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert plots.plot_density_histogram(HIST, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_config_run_is_positional_and_path():
    from monosemantic.cli import build_parser

    parser = build_parser("eval")
    ns = parser.parse_args(["eval", "some/run", "--n-contexts", "2k"])
    assert ns.run == Path("some/run") and ns.n_contexts == 2000
    assert EvalConfig(run="x").run.name == "x"
    with pytest.raises(SystemExit):
        parser.parse_args(["eval"])  # RUN is required


def test_trainer_dead_comes_with_its_window():
    from monosemantic.evals.report import trainer_dead

    final = {"dead_fraction": 0.25, "dead_window_tokens": 4096}
    assert trainer_dead({"training": {"final_train": final}}, 8) == \
        {"dead_fraction": 0.25, "n_dead": 2, "dead_window_tokens": 4096}
    # A run saved before its records carried the window: the configured window.
    old = {"training": {"final_train": {"dead_fraction": 0.5}},
           "train_config": {"dead_window_tokens": 100}}
    assert trainer_dead(old, 8)["dead_window_tokens"] == 100
    # No window known: no dead figure at all, rather than one without its window.
    assert trainer_dead({"training": {"final_train": {"dead_fraction": 0.5}}}, 8) == {}
    assert trainer_dead({}, 8) == {}
