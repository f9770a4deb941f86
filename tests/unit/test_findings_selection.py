"""Which run of a size the findings take: the longest-trained, then the lowest loss."""

from monosemantic.findings.selection import longest_per_size, series_label
from monosemantic.sweep.record import SweepRecord


def _record(run: str, n_features: int, tokens: int, loss: float) -> SweepRecord:
    return SweepRecord(run=run, architecture="topk", n_features=n_features, d_in=16,
                       tokens=tokens, steps=tokens // 128, batch_size=128, lr=1e-3, flops=1.0,
                       flops_formula="12·d·F·tokens", train_loss=loss, sparsity={"k": 4})


def test_longest_run_per_size_then_lowest_loss():
    records = [_record("a", 16, 1000, 1.0), _record("b", 16, 2000, 3.0),
               _record("c", 16, 2000, 2.0), _record("d", 32, 1000, 5.0)]
    chosen = sorted(r.run for r in longest_per_size(records))
    assert chosen == ["c", "d"]


def test_series_label_names_architecture_and_sparsity():
    assert series_label(_record("a", 16, 1000, 1.0)) == "topk k=4"
