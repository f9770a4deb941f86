"""The optimal-lr law says when every cell's best lr is an end of the lrs tried, and prints
no interval that the bootstrap could not make wider than zero."""

import pytest

from helpers.sweep_tables import Grid, TrueLaw, synthetic_records, write_sweep
from monosemantic.laws.findings import findings_rows
from monosemantic.laws.fit import fit_group
from monosemantic.laws.lr import lr_cells
from monosemantic.laws.page import write_page
from monosemantic.laws.plan_cli import PlanConfig, plan
from monosemantic.laws.points import Point, group_records
from monosemantic.laws.scaling_cli import ScalingConfig, fit_sweep, summary_lines, write_fit


def _fitted(tmp_path, grid):
    out = write_sweep(tmp_path / "sweep", synthetic_records(TrueLaw(), grid))
    report = fit_sweep(ScalingConfig(out=out, n_bootstrap=30))
    write_fit(out, report)
    return out, report["groups"][0]


def _lr_row(group):
    (row,) = [r for r in findings_rows(group) if r[0] == "optimal lr"]
    return row


def test_best_lr_always_the_largest_tried_is_called_an_edge(tmp_path):
    # the true optimum (lr 1 at every compute) lies above both lrs tried, as on the relu sweep
    out, group = _fitted(tmp_path, Grid(lrs=(5e-5, 1e-3), lr_law=(1.0, 0.0)))
    lr = group["lr"]
    assert {c["edge"] for c in lr["cells"]} == {"largest"}
    assert lr["edge"] == {"cells": 36, "largest": 36, "smallest": 0}
    assert lr["exponent"] == 0.0 and lr["interval"]["exponent"] is not None  # kept
    assert lr["interval_note"].startswith("n/a")
    _, _, exponent, interval, verdict = _lr_row(group)
    assert interval.startswith("n/a") and "[" not in interval
    assert "edge of the grid" in verdict and "widen --lr" in verdict
    assert "same shape" not in verdict
    text = "\n".join(summary_lines(group))
    assert "the largest of the 2 tried (edge of the grid)" in text
    assert "0.000]" not in text and "[+0.000" not in text and "[-0.000" not in text
    page = write_page(tmp_path / "scaling.html", {"sweep": "s", "metric": "train_loss",
                                                  "method": "parametric", "groups": [group]},
                      {}).read_text()
    assert "widen --lr" in page and "the largest tried" in page and "0.000]" not in page
    p = plan(PlanConfig(compute=1e16, fit=out))
    assert p["lr"] == pytest.approx(1e-3)
    assert p["lr_interval"] is None
    assert "edge of the grid" in p["lr_note"] and "n/a" in p["lr_note"]


def test_best_lr_at_the_smallest_tried_is_an_edge_too():
    pts = [Point(f"r{lr}", 1, 1, 1, lr, 0, 10.0, 1.0 + lr) for lr in (1e-4, 1e-3, 1e-2)]
    (cell,) = lr_cells(pts)
    assert cell.edge == "smallest" and not cell.interior
    (inner,) = lr_cells([*pts[1:], Point("low", 1, 1, 1, 1e-5, 0, 10.0, 5.0)])
    assert inner.interior and inner.edge is None


def test_interior_optimum_keeps_its_interval_and_verdict(tmp_path):
    lrs = tuple(10.0 ** -(1 + 0.5 * i) for i in range(9))  # 1e-1 down to 1e-5
    out, group = _fitted(tmp_path, Grid(lrs=lrs, noise=0.002, lr_law=(3e-2, -0.15)))
    lr = group["lr"]
    assert all(c["interior"] and c["edge"] is None for c in lr["cells"])
    assert lr["edge"]["largest"] == lr["edge"]["smallest"] == 0
    assert lr["interval_note"] is None and "note" not in lr
    _, _, _, interval, verdict = _lr_row(group)
    lo, hi = lr["interval"]["exponent"]
    assert interval == f"[{lo:+.3f}, {hi:+.3f}]" and hi < 0
    assert verdict.endswith("— same shape")
    assert "edge" not in "\n".join(summary_lines(group))
    p = plan(PlanConfig(compute=1e16, fit=out))
    assert p["lr_note"] is None and p["lr_interval"][0] < p["lr"] < p["lr_interval"][1]


def test_fit_group_records_the_edge_when_the_law_is_not_fitted():
    # one token budget and one size swept over lrs: too few compute values for a law
    records = [r for r in synthetic_records(TrueLaw(), Grid(lrs=(5e-5, 1e-3), lr_law=(1.0, 0.0)))
               if r.lr == 1e-3 or (r.n_features == 256 and r.tokens == 2**17)]
    (group,) = group_records(records, "train_loss")
    lr = fit_group(group, "train_loss", "parametric", "auto", 0, 0.95, 0)["lr"]
    assert lr["note"].startswith("not fitted") and lr["edge"]["largest"] == 1
