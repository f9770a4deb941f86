"""`ResultsDB` under the explain / score workers: many threads writing through one connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.onepass import PassOptions, analyze_batches
from monosemantic.featuredb.writer import write_feature_db
from monosemantic.interp.results import ResultsDB


def tiny_feature_db(tmp_path):
    gen = torch.Generator().manual_seed(0)
    n = 32
    rows = [RowBatch(torch.randn(n, 4, generator=gen), torch.arange(n),
                     torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64))]
    opts = PassOptions(top_k=2, random_examples=1, zero_examples=1, n_intervals=2,
                       interval_examples=1, window_left=2, window_right=2, cooccur_neighbours=0)
    analysis = analyze_batches(lambda: iter(rows), torch.relu, 4, opts)
    return write_feature_db(tmp_path / "features.sqlite", analysis, {})


def test_concurrent_writes_all_land(tmp_path):
    path = tiny_feature_db(tmp_path)
    n_threads, per_thread = 8, 40

    def work(worker: int) -> list[int]:
        ids = []
        for i in range(per_thread):
            exp = out.add_explanation(i % 4, f"w{worker}", f"text {i}", {"i": i})
            out.add_score(i % 4, exp, "detection", 0.5, {"judge": "j"})
            out.explanations()  # reads interleaved with the writes
            ids.append(exp)
        return ids

    with ResultsDB(path) as out, ThreadPoolExecutor(n_threads) as pool:
        ids = [i for got in pool.map(work, range(n_threads)) for i in got]
        assert len(set(ids)) == n_threads * per_thread
        assert len(out.scores("detection")) == n_threads * per_thread
        assert out.scored("detection", "j") == set(ids)
