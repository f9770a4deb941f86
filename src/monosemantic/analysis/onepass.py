"""Feature statistics and examples for every feature at once, streamed over rows in corpus order.

Two streaming passes over the same rows (the design choice for activation intervals):

- Pass 1 (`stats`): firing count, sum and maximum of the activations, the top-K examples,
  uniformly sampled active examples and zero-activation examples (rows where the feature is 0).
- Pass 2 (`intervals`, skipped when `n_intervals` = 0): with every feature's maximum known,
  exact counts in `n_intervals` equal-width intervals of (0, max] (their shares sum to 1), a
  uniform sample of examples inside each interval, and a log-spaced histogram relative to the
  maximum (`hist_bins` bins over [max·10^-hist_decades, max] plus one bin below).

Why two passes: equal-width intervals between 0 and the maximum are defined only once the
maximum is known, and exact interval shares and unbiased within-interval samples cannot be
recovered from any fixed binning chosen before it is known. The second pass repeats the SAE
encode (the dominant cost); its bookkeeping is as light as the first pass's.

Every example carries a token window [peak - left, peak + right] cut at document boundaries,
with the feature's activation on every token. Windows are read while streaming: each batch is
processed once the next batch is encoded, from the sparse codes of the previous, current and
next batches (`windows.RowSpan`), so `window_left` and `window_right` must not exceed the batch.

Memory (bytes, independent of the corpus length), for F features analysed at once (the whole
dictionary, or one slice of it: `slices`, `analyze --feature-slice`), with W = left + 1 + right,
K = top_k, S = random_examples + zero_examples, I = n_intervals, r = interval_examples,
H = hist_bins, B = batch size, T = cooccur_tokens, L0 = mean active features per token:
  F · (K·(18 + 8·W) + S·(22 + 8·W))  pass 1 example lists (key, row, value, offset, window)
  F · I · r · (22 + 8·W)             pass 2 interval samples
  F · (16·I + 8·H + 48)              counts, sums, maxima, interval counts, histogram, list bounds
  ≤ 24 · T · L0                      pass 1 co-occurrence row sample (independent of F)
(keys take 4 bytes in the top lists, 8 in the uniform samples: `bottomk.uniform_keys`;
the first three, less 8·H + 8 when I = 0, are exactly `FeatureAnalysis.nbytes()` less the
sample: `slices.state_bytes_per_feature`), plus, transiently and per encode worker, the
pre-activations and dense codes of one encode call of C = `encode_rows` rows, at most 8·C·F
bytes (32 MiB by default, 512 MiB at the 64-row minimum for 1M features; `SAE.encode_sparse`:
only the slice's encoder columns for relu, jumprelu and trained batchtopk; topk builds no dense
codes but needs a chunk of full pre-activations for its top k, at most 256 MiB), and the sparse
codes of 3 + encode_ahead batches (about 40 bytes per active entry, row- and feature-major).
With the defaults (K=20, S=10, I=10, r=4, H=30, W=25) the state is 15,908 bytes per feature:
62 MiB for 4,096 features, 249 MiB for 16,384, 15.9 GB for 1M at once. A 1M dictionary in
slices of 65,536 needs per slice 994 MiB of state + 32 MiB per encode worker, about 1 GiB plus
the fixed parts (the SAE's own 8·F·d bytes of weights aside: 5 GiB at d = 640), and reads the
rows 16 x 2 times.

The bookkeeping runs on one thread (`one_thread`) and by default overlaps the encode: the
next batch is read in a background thread (`encode_ahead`) and its row chunks are encoded by
worker threads (`encode_workers`) while the current one's bookkeeping runs
(analysis/codestream.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from monosemantic.analysis.binning import exact_columns, hist_edges, interval_edges
from monosemantic.analysis.bottomk import UNIFORM_KEYS, GroupedBottomK, PayloadFn, uniform_keys
from monosemantic.analysis.codestream import Encode, auto_chunk_rows, one_thread, spans
from monosemantic.analysis.cooccur import RowSample
from monosemantic.analysis.windows import RowSpan, SparseRows
from monosemantic.errors import UserError


@dataclass
class PassOptions:
    """What the pass keeps per feature (see the module docstring for the memory it costs)."""

    top_k: int = 20
    """Top activating examples per feature."""
    random_examples: int = 5
    """Uniformly sampled active examples per feature."""
    zero_examples: int = 5
    """Examples where the feature is 0 (contrast), from random rows of the corpus."""
    n_intervals: int = 10
    """Equal-width activation intervals between 0 and the feature's maximum; 0 skips pass 2."""
    interval_examples: int = 4
    """Uniformly sampled examples inside each interval."""
    hist_bins: int = 30
    """Log-spaced histogram bins over [max·10^-hist_decades, max] (plus one bin below)."""
    hist_decades: float = 4.0
    """Decades below each feature's maximum that the histogram covers."""
    window_left: int = 16
    """Tokens of context before the peak token in an example window."""
    window_right: int = 8
    """Tokens after the peak token in an example window."""
    zero_rows_per_batch: int = 2
    """Random rows per batch offered as zero-activation examples for the features inactive there."""
    cooccur_neighbours: int = 10
    """Co-occurrence neighbours kept per feature (Ochiai score, see analysis.cooccur); 0 skips."""
    cooccur_tokens: int = 131072
    """Uniformly sampled rows whose active features are kept for the co-occurrence counts (all
    rows, so exact counts, when the range is shorter); memory at most 24 bytes x this x L0."""
    cooccur_min_count: int = 3
    """Tokens two features must share to be co-occurrence neighbours."""
    seed: int = 0
    """Seed of the uniform samples (their keys hash the seed, the row and the feature, so the
    samples do not depend on the batch size or on feature slices)."""
    encode_ahead: int = 1
    """Batches read and encoded ahead in a background thread while the bookkeeping of the
    current batch runs (the two overlap); 0 alternates them in one thread. Each costs one more
    batch of sparse codes in memory."""
    encode_workers: int = 0
    """Threads that encode the row chunks, torch's threads split among them; 0 = two (one if
    torch has one thread; `analyze` uses 1 for a GPU encode); 1 = one thread on all of torch's
    threads. A multi-threaded GEMM waits for its slowest thread, so a core the bookkeeping
    takes stalls its whole team: with two teams it stalls at most one (analysis/codestream.py)."""
    encode_rows: int = 0
    """Rows per SAE encode call within a batch; 0 = about 4M codes per call (at least 64
    rows): bounds the dense codes in memory, and was faster than whole batches
    (analysis/codestream.py). The SAE must encode rows independently
    (`analyze` encodes whole batches for one that does not); below 64 rows a BLAS may pick
    other kernels and change codes in the last bit."""

    def workers(self) -> int:
        """Encode workers (`encode_workers`, 0 resolved)."""
        if self.encode_workers > 0:
            return self.encode_workers
        return min(2, torch.get_num_threads())

    def chunk_rows(self, n_features: int) -> int:
        """Rows per encode call for `n_features` codes per row."""
        return self.encode_rows if self.encode_rows > 0 else auto_chunk_rows(n_features)

    def validate(self, batch_size: int) -> None:
        for name in ("top_k", "random_examples", "zero_examples", "n_intervals",
                     "interval_examples", "hist_bins", "window_left", "window_right",
                     "zero_rows_per_batch", "cooccur_neighbours", "cooccur_tokens",
                     "cooccur_min_count", "encode_ahead", "encode_workers", "encode_rows"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.hist_decades > 0:
            raise UserError(f"hist_decades must be > 0, got {self.hist_decades}")
        if max(self.window_left, self.window_right) > batch_size:
            raise UserError(f"window_left / window_right ({self.window_left} / "
                            f"{self.window_right}) must not exceed the batch size {batch_size}")

    @property
    def width(self) -> int:
        return self.window_left + 1 + self.window_right


@dataclass
class FeatureAnalysis:
    """What the passes found; tensors indexed by feature (F) and list slot."""

    n_tokens: int
    count_F: Tensor
    """Rows where the feature is > 0 (int64)."""
    sum_F: Tensor
    """Sum of its activations (float64)."""
    max_F: Tensor
    top: GroupedBottomK
    """Top-K list per feature (key = -activation)."""
    random: GroupedBottomK
    zero: GroupedBottomK
    options: PassOptions
    interval_counts_FI: Tensor | None = None
    intervals: GroupedBottomK | None = None
    """Samples per (feature, interval): group = feature · I + interval."""
    hist_FH: Tensor | None = None
    """Histogram counts; column 0 is everything below max·10^-hist_decades."""
    cooccur: RowSample | None = None
    """The rows sampled for co-occurrence counts (None when skipped)."""
    feature_lo: int = 0
    """Dictionary id of feature 0 here: > 0 for a slice of a larger dictionary (`slices`)."""

    @property
    def n_features(self) -> int:
        return int(self.count_F.shape[0])

    @property
    def density_F(self) -> Tensor:
        return self.count_F.double() / max(self.n_tokens, 1)

    @property
    def mean_active_F(self) -> Tensor:
        """Mean activation over the rows where the feature is active (0 when it never is)."""
        return torch.where(self.count_F > 0, self.sum_F / self.count_F.clamp(min=1).double(), 0.0)

    def interval_edges_FI1(self) -> Tensor:
        """Interval edges [F, I + 1]: j·max/I; interval j counts the values in
        [edge j, edge j + 1), the last also the maximum."""
        return interval_edges(self.max_F, self.options.n_intervals)

    def hist_edges_FH1(self) -> Tensor:
        """Histogram edges [F, H + 1]: column 0 of `hist_FH` counts the values below edge 0,
        column j in 1..H those in [edge j - 1, edge j), column H also the maximum."""
        return hist_edges(self.max_F, self.options.hist_bins, self.options.hist_decades)

    def nbytes(self) -> int:
        lists: list[GroupedBottomK | RowSample] = [self.top, self.random, self.zero]
        if self.intervals:
            lists.append(self.intervals)
        dense = [self.count_F, self.sum_F, self.max_F, self.interval_counts_FI, self.hist_FH]
        if self.cooccur is not None:
            lists.append(self.cooccur)
        return (sum(x.nbytes() for x in lists)
                + sum(t.numel() * t.element_size() for t in dense if t is not None))


# Streams of `uniform_keys`: one per sample kind, so their keys are independent.
_RANDOM, _ZERO, _INTERVAL = 0, 1, 2


def _windows_fn(span: RowSpan, opts: PassOptions, group_to_feature: int = 1) -> PayloadFn:
    def payload(rows_Q: Tensor, groups_Q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return span.windows(rows_Q, groups_Q // group_to_feature, opts.window_left,
                            opts.window_right)

    return payload


def stats_pass(batches: Iterable, encode: Encode, n_features: int, opts: PassOptions,
               first_row: int = 0, on_batch: Callable[[int], object] | None = None,
               feature_lo: int = 0) -> FeatureAnalysis:
    """Pass 1 over `batches` (RowBatch-like: acts_ND, tokens_N, doc_ids_N in corpus order,
    the first at global row `first_row`); `encode` gives the codes of features
    [feature_lo, feature_lo + n_features) of the dictionary."""
    # Draws only the zero-example rows (a fixed number per batch), so every feature slice
    # draws the same rows.
    gen = torch.Generator().manual_seed(opts.seed)
    W = opts.width
    result = FeatureAnalysis(
        n_tokens=0, count_F=torch.zeros(n_features, dtype=torch.int64),
        sum_F=torch.zeros(n_features, dtype=torch.float64), max_F=torch.zeros(n_features),
        top=GroupedBottomK(n_features, opts.top_k, W),
        random=GroupedBottomK(n_features, opts.random_examples, W, UNIFORM_KEYS),
        zero=GroupedBottomK(n_features, opts.zero_examples, W, UNIFORM_KEYS), options=opts,
        cooccur=(RowSample(opts.cooccur_tokens, opts.seed + 2)
                 if opts.cooccur_neighbours > 0 and opts.cooccur_tokens > 0 else None),
        feature_lo=feature_lo)
    for cur, span in spans(batches, encode, first_row, opts.encode_ahead,
                           opts.chunk_rows(n_features), opts.workers()):
        with one_thread():
            _stats_batch(result, cur, span, opts, gen)
        if on_batch is not None:
            on_batch(cur.n)
    with one_thread():
        for examples in (result.top, result.random, result.zero):
            examples.sort_()
    return result


def _stats_batch(result: FeatureAnalysis, cur: SparseRows, span: RowSpan, opts: PassOptions,
                 gen: torch.Generator) -> None:
    """Pass 1's bookkeeping of one batch."""
    n_features = result.n_features
    feats_E, vals_E, rows_E = cur.feats_E, cur.vals_E, cur.rows_E
    result.n_tokens += cur.n
    result.count_F += torch.bincount(feats_E, minlength=n_features)
    result.sum_F.index_add_(0, feats_E, vals_E.double())
    result.max_F.scatter_reduce_(0, feats_E, vals_E, reduce="amax")
    payload = _windows_fn(span, opts)
    result.top.update(feats_E, -vals_E, rows_E, vals_E, payload)
    keys_E = uniform_keys(opts.seed, _RANDOM, rows_E, feats_E + result.feature_lo)
    result.random.update(feats_E, keys_E, rows_E, vals_E, payload)
    _offer_zero_rows(result.zero, cur, opts, gen, payload, result.feature_lo)
    if result.cooccur is not None:
        result.cooccur.add(cur.lo, cur.n, rows_E, feats_E)


def _offer_zero_rows(zero: GroupedBottomK, cur: SparseRows, opts: PassOptions,
                     gen: torch.Generator, payload: PayloadFn, feature_lo: int = 0) -> None:
    """Offer a few random rows of the batch (distinct) to every feature that is 0 there, in
    one update (one window lookup for all of them)."""
    if zero.r == 0 or opts.zero_rows_per_batch == 0:
        return
    n_feat = cur.n_features
    drawn = torch.randint(cur.n, (opts.zero_rows_per_batch,), generator=gen).tolist()
    groups, rows = [], []
    for local in dict.fromkeys(drawn):  # distinct, in draw order
        row = cur.lo + local
        inactive_F = torch.ones(n_feat, dtype=torch.bool)
        inactive_F[cur.feats_E[cur.rows_E == row]] = False
        feats_Z = inactive_F.nonzero().squeeze(1)
        groups.append(feats_Z)
        rows.append(torch.full_like(feats_Z, row))
    group_Z, rows_Z = torch.cat(groups), torch.cat(rows)
    zero.update(group_Z, uniform_keys(opts.seed, _ZERO, rows_Z, group_Z + feature_lo), rows_Z,
                torch.zeros(len(group_Z)), payload)


def interval_pass(result: FeatureAnalysis, batches: Iterable, encode: Encode,
                  first_row: int = 0, on_batch: Callable[[int], object] | None = None) -> None:
    """Pass 2 over the same batches as pass 1: interval counts and samples, histogram."""
    opts = result.options
    n_feat, n_int, n_bins = result.n_features, opts.n_intervals, opts.hist_bins
    result.interval_counts_FI = torch.zeros(n_feat, n_int, dtype=torch.int64)
    result.hist_FH = torch.zeros(n_feat, n_bins + 1, dtype=torch.int64)
    result.intervals = GroupedBottomK(n_feat * n_int, opts.interval_examples, opts.width,
                                      UNIFORM_KEYS)
    max_F = result.max_F.clamp(min=torch.finfo(torch.float32).tiny)
    for cur, span in spans(batches, encode, first_row, opts.encode_ahead,
                           opts.chunk_rows(n_feat), opts.workers()):
        with one_thread():
            _interval_batch(result, cur, span, max_F)
        if on_batch is not None:
            on_batch(cur.n)
    with one_thread():
        result.intervals.sort_()


def _interval_batch(result: FeatureAnalysis, cur: SparseRows, span: RowSpan, max_F: Tensor
                    ) -> None:
    """Pass 2's bookkeeping of one batch."""
    opts = result.options
    counts_FI, hist_FH, intervals = result.interval_counts_FI, result.hist_FH, result.intervals
    # `interval_pass` allocates all three before its first batch.
    assert counts_FI is not None and hist_FH is not None and intervals is not None
    n_int, n_bins = opts.n_intervals, opts.hist_bins
    feats_E, vals_E = cur.feats_E, cur.vals_E
    ratio_E = vals_E / max_F[feats_E]
    # Columns as the reported edges say (`binning`); a value a hair above the pass-1 maximum
    # still belongs to the top interval and bin.
    interval_E = exact_columns(ratio_E * n_int, vals_E, n_int, lambda s: interval_edges(
        result.max_F[feats_E[s]], n_int)[:, 1:n_int])
    group_E = feats_E * n_int + interval_E
    counts_FI.view(-1).index_add_(0, group_E, torch.ones_like(group_E))
    pos_E = (torch.log10(ratio_E) + opts.hist_decades) / opts.hist_decades * n_bins + 1
    bin_E = exact_columns(pos_E, vals_E, n_bins + 1, lambda s: hist_edges(
        result.max_F[feats_E[s]], n_bins, opts.hist_decades)[:, :n_bins])
    hist_FH.view(-1).index_add_(0, feats_E * (n_bins + 1) + bin_E, torch.ones_like(bin_E))
    keys_E = uniform_keys(opts.seed, _INTERVAL, cur.rows_E, feats_E + result.feature_lo)
    intervals.update(group_E, keys_E, cur.rows_E, vals_E,
                            _windows_fn(span, opts, group_to_feature=n_int))


def analyze_batches(make_batches: Callable[[], Iterable], encode: Encode, n_features: int,
                    opts: PassOptions, first_row: int = 0,
                    on_batch: Callable[[int], object] | None = None,
                    feature_lo: int = 0) -> FeatureAnalysis:
    """Both passes; `make_batches()` must give the same rows in the same order each call.

    `encode` gives the codes of features [feature_lo, feature_lo + n_features): a slice of a
    larger dictionary has exactly the statistics and samples those features get unsliced."""
    result = stats_pass(make_batches(), encode, n_features, opts, first_row, on_batch,
                        feature_lo)
    if result.n_tokens == 0:
        raise UserError("no rows to analyse: the row range is empty")
    if opts.n_intervals > 0:
        interval_pass(result, make_batches(), encode, first_row, on_batch)
    return result
