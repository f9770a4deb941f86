"""The pass's histogram and interval counts against brute force over the reported edges, on
random activations, values on the edges (and one float32 step either side) and extremes."""

import numpy as np
import pytest
import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.onepass import PassOptions, analyze_batches

MAXIMA = [1.0, 1000.0, 3.7, 1e-3, 12345.678, 1e-30, 3e38]
OPTS = PassOptions(top_k=1, random_examples=0, zero_examples=0, n_intervals=10,
                   interval_examples=3, hist_bins=30, hist_decades=4.0, window_left=0,
                   window_right=0, cooccur_neighbours=0)


def feature_values(maximum: float, rng: np.random.Generator) -> np.ndarray:
    """float32 activations of one feature whose maximum is `maximum`: log-uniform ones from
    two decades below the histogram to the maximum, every histogram and interval edge rounded
    to float32 and its float32 neighbours, the smallest normal and subnormal floats."""
    top = np.float32(maximum)
    decades = OPTS.hist_decades
    edges = [float(top) * 10.0 ** e for e in np.linspace(-decades, 0, OPTS.hist_bins + 1)]
    edges += [float(top) * j / OPTS.n_intervals for j in range(1, OPTS.n_intervals)]
    on_edges = np.array(edges, dtype=np.float32)
    near = [np.nextafter(on_edges, np.float32(0)), on_edges,
            np.nextafter(on_edges, np.float32(np.inf))]
    spread = top * np.power(10.0, -rng.uniform(0, decades + 2, 400)).astype(np.float32)
    tiny = np.array([np.finfo(np.float32).tiny, np.float32(1e-45)], dtype=np.float32)
    vals = np.concatenate([spread, *near, tiny, [top]]).astype(np.float32)
    vals = vals[(vals > 0) & (vals <= top)]
    return rng.permutation(vals)


def analyse(columns: list[np.ndarray]):
    """Both passes over rows whose codes are the given values (feature j = column j)."""
    n_rows = max(len(c) for c in columns)
    f_NF = torch.zeros(n_rows, len(columns))
    for j, c in enumerate(columns):
        f_NF[: len(c), j] = torch.from_numpy(c)
    zeros_N = torch.zeros(n_rows, dtype=torch.int64)

    def batches():
        return (RowBatch(f_NF[i:i + 64], zeros_N[i:i + 64], zeros_N[i:i + 64], zeros_N[i:i + 64])
                for i in range(0, n_rows, 64))

    return analyze_batches(batches, lambda x_BD: x_BD.clamp(min=0), len(columns), OPTS)


def brute_counts(values: list[float], edges: list[float], lowest: int) -> list[int]:
    """Per column c, the values v with edges[lowest + c - 1] <= v < edges[lowest + c]; the
    first column is open below, the last above (Python floats: float64 comparisons)."""
    inner = edges[lowest:len(edges) - 1]
    counts = [0] * (len(inner) + 1)
    for v in values:
        column = 0
        while column < len(inner) and inner[column] <= v:
            column += 1
        counts[column] += 1
    return counts


@pytest.fixture(scope="module")
def analysed():
    rng = np.random.default_rng(0)
    columns = [feature_values(m, rng) for m in MAXIMA]
    return columns, analyse(columns)


def test_histogram_counts_equal_brute_force_on_the_reported_edges(analysed):
    columns, result = analysed
    edges_FH1 = result.hist_edges_FH1()
    for f, vals in enumerate(columns):
        top = float(vals.max())
        steps = 10.0 ** np.linspace(-OPTS.hist_decades, 0, OPTS.hist_bins + 1)
        assert np.allclose(edges_FH1[f].numpy(), top * steps, rtol=1e-12, atol=0)
        # Column 0 lies below edge 0: every edge but the last bounds a column from below.
        want = brute_counts(vals.astype(np.float64).tolist(), edges_FH1[f].tolist(), 0)
        assert result.hist_FH[f].tolist() == want, MAXIMA[f]


def test_interval_counts_and_samples_follow_the_reported_edges(analysed):
    columns, result = analysed
    n_int = OPTS.n_intervals
    edges_FI1 = result.interval_edges_FI1()
    for f, vals in enumerate(columns):
        assert np.allclose(edges_FI1[f].numpy(), float(vals.max()) * np.arange(n_int + 1) / n_int,
                           rtol=1e-12, atol=0)
        # Edge 0 (zero) bounds nothing: interval 0 takes every value below edge 1.
        edges = edges_FI1[f].tolist()
        want = brute_counts(vals.astype(np.float64).tolist(), edges, 1)
        assert result.interval_counts_FI[f].tolist() == want, MAXIMA[f]
        for j in range(n_int):
            group = f * n_int + j
            sampled = result.intervals.vals_GR[group][result.intervals.filled_GR()[group]]
            upper = np.inf if j == n_int - 1 else edges[j + 1]
            assert all(edges[j] <= v < upper for v in sampled.double().tolist()), (f, j)
