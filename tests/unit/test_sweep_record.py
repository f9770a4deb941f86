"""The sweep table round-trips and rejects lines that are not records."""

import pytest

from monosemantic.errors import UserError
from monosemantic.sweep.record import SWEEP_TABLE, SweepRecord, read_sweep


def _record(**overrides) -> SweepRecord:
    values = dict(run="f1024_t1M", architecture="topk", n_features=1024, d_in=64,
                  tokens=1_000_000, steps=244, batch_size=4096, lr=2e-4, flops=3.9e14,
                  flops_formula="6·d·F·tokens", train_loss=0.5,
                  train_loss_terms={"mse": 0.45, "aux": 0.05}, sparsity={"k": 32}, l0=31.5)
    values.update(overrides)
    return SweepRecord(**values)


def test_table_round_trips(tmp_path):
    records = [_record(), _record(run="f2048_t1M", n_features=2048, variance_explained=0.9)]
    (tmp_path / SWEEP_TABLE).write_text("".join(r.to_json() + "\n" for r in records))
    assert read_sweep(tmp_path) == records


def test_bad_line_names_the_line(tmp_path):
    (tmp_path / SWEEP_TABLE).write_text(_record().to_json() + "\n" + '{"run": "x"}\n')
    with pytest.raises(UserError, match="line 2"):
        read_sweep(tmp_path)


def test_missing_table_says_how_to_make_it(tmp_path):
    with pytest.raises(UserError, match="monosemantic sweep"):
        read_sweep(tmp_path)
