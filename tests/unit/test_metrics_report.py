"""The eval report's table, strict-JSON output and the optional density plot."""

import json
import math
from pathlib import Path

import pytest

from monosemantic.evals import plots
from monosemantic.evals.report import EvalConfig, format_table, write_json

HIST = {"bin_edges": [-3.0, -2.0, -1.0, 0.0], "counts": [1, 0, 2], "n_dead": 1}


def test_table_rows_and_nan():
    table = format_table({"l0": 12.345, "nmse": 0.25, "dead_fraction": 0.125,
                          "loss_recovered": math.nan, "delta_ce": 0.01})
    lines = table.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("L0") and lines[0].endswith("12.35")
    assert "12.50%" in table and "+0.0100" in table
    assert "loss recovered" in table and table.count("n/a") == 1


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
