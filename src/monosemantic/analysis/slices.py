"""Feature slices: a large dictionary analysed a slice of consecutive features at a time.

Each slice runs both passes (`onepass.analyze_batches`) over the same rows with the SAE encode
restricted to its features (`SAE.encode_sparse`), so the pass state is that of one slice; the
slice is written to the database (`store.writer.FeatureDBWriter`) and dropped before the next.
The rows are read once per slice and pass, and the encode runs per slice: for elementwise
architectures (relu, jumprelu, trained batchtopk) only the slice's encoder columns, so the
encode costs about the same in total; topk computes every pre-activation in each slice (its
top k needs them), so its encode costs S times the unsliced one for S slices.

A slice's results are exactly those its features get unsliced: the samples' keys hash the row
and the feature (`bottomk.uniform_keys`) and the zero-example rows are drawn per batch, whatever
the features; `RowSample` draws the same row keys in every slice (same seed, same batches), so
every slice samples the same rows, and the co-occurrence entries of all slices together
(features offset by the slice start) are the unsliced ones.

Memory of one slice of s features (bytes; `slice_bytes`, what `choose_slice` budgets), with
B = batch_size and the pass options' K, S, I, r, H, W (onepass's module docstring):
    s · (state per feature + 8·C·w),   C = min(B, rows per encode call: `chunk_rows`),
                                       w = encode workers (`PassOptions.workers`)
    state per feature = K·(18 + 8·W) + (S + I·r)·(22 + 8·W) + 16·I + 8·H + 48   (I > 0)
                      = K·(18 + 8·W) + S·(22 + 8·W) + 40                       (I = 0)
which is exactly `FeatureAnalysis.nbytes()` less the co-occurrence sample; 8·C·s bounds one
encode call's pre-activations and codes (32 MiB by default; 8·64·s at the 64-row minimum), and
each worker runs one call at a time. Not in it: parts that do not grow with s (the
co-occurrence sample ≤ 24·T·L0, the sparse codes of 3 + encode_ahead batches, topk's chunk of
pre-activations ≤ 256 MiB per worker), the SAE's own weights (8·F·d) and what outlives the
slices (`SlicedAnalysis`: 28 bytes per feature, plus the co-occurrence entries).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from monosemantic.analysis.featuremap import peak_tokens
from monosemantic.analysis.onepass import FeatureAnalysis, PassOptions, analyze_batches
from monosemantic.errors import UserError
from monosemantic.sae.kernels import SparseCodes

EncodeSlice = Callable[[Tensor, int, int], Tensor | SparseCodes]
"""(x [B, d], lo, hi) -> codes of features [lo, hi): dense [B, hi - lo] or listed with ids
relative to lo (`SAE.encode_sparse`)."""

SLICE_ALIGN = 4096
"""Automatic slices are multiples of this (= `SAE.encode_block`, so no slice computes encoder
columns beyond its own) when the budget allows one that large."""

N_PEAKS = 5
"""Top-example peak tokens kept per feature for the map's cluster labels."""


def state_bytes_per_feature(opts: PassOptions) -> int:
    """Bytes of pass state per feature: `FeatureAnalysis.nbytes()` / F without co-occurrence."""
    # Key 4 (top: float32) or 8 (uniform samples: float64), row 8, value 4, offset 2, tokens
    # and acts 4·W each.
    top_slot = 18 + 8 * opts.width
    uniform_slot = top_slot + 4
    # Pass 1: three lists (plus each group's worst key) and count, sum, max.
    per_feature = (opts.top_k * top_slot + (opts.random_examples + opts.zero_examples)
                   * uniform_slot + 4 + 2 * 8 + 20)
    if opts.n_intervals > 0:  # pass 2: I interval lists, interval counts, the histogram
        per_feature += opts.n_intervals * (opts.interval_examples * uniform_slot + 8 + 8)
        per_feature += 8 * (opts.hist_bins + 1)
    return per_feature


def slice_bytes(n_features: int, opts: PassOptions, batch_size: int) -> int:
    """Estimated memory of analysing `n_features` at once (module docstring); nondecreasing
    in `n_features`."""
    rows = min(batch_size, opts.chunk_rows(n_features))
    return n_features * (state_bytes_per_feature(opts) + 8 * rows * opts.workers())


def choose_slice(n_features: int, feature_slice: int, max_bytes: float, opts: PassOptions,
                 batch_size: int) -> int:
    """Features per slice: `feature_slice` when > 0; else all of them unless their estimate
    exceeds `max_bytes` (> 0), then the largest slice within it (a multiple of `SLICE_ALIGN`
    when at least that large)."""
    if feature_slice < 0:
        raise UserError(f"feature_slice must be >= 0 (0 = automatic), got {feature_slice}")
    if feature_slice > 0:
        return min(feature_slice, n_features)
    if max_bytes <= 0 or slice_bytes(n_features, opts, batch_size) <= max_bytes:
        return n_features
    lo, hi = 1, n_features  # the largest size within the budget, by bisection (1 if none)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if slice_bytes(mid, opts, batch_size) <= max_bytes else (lo, mid - 1)
    return lo // SLICE_ALIGN * SLICE_ALIGN if lo >= SLICE_ALIGN else lo


def feature_ranges(n_features: int, size: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) of `size` features covering [0, n_features) (the last shorter)."""
    return [(lo, min(lo + size, n_features)) for lo in range(0, n_features, size)]


@dataclass
class SlicedAnalysis:
    """What the decoder analyses and the report need once every slice is written and dropped."""

    n_features: int
    slice_size: int
    n_tokens: int = 0
    count_F: Tensor = field(init=False)
    """Rows where each feature fired (int64)."""
    peaks_FR: Tensor = field(init=False)
    """Peak token of each feature's first `N_PEAKS` top examples (int32, -1 where none)."""
    state_bytes: int = 0
    """Pass state of the largest slice (`FeatureAnalysis.nbytes()`)."""
    _cooccur_rows: int | None = None
    _cooccur_parts: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    """Slice start -> its co-occurrence entries (local row, dictionary feature)."""

    def __post_init__(self) -> None:
        self.count_F = torch.zeros(self.n_features, dtype=torch.int64)
        self.peaks_FR = torch.full((self.n_features, N_PEAKS), -1, dtype=torch.int32)

    @property
    def n_slices(self) -> int:
        return math.ceil(self.n_features / self.slice_size)

    def add(self, part: FeatureAnalysis) -> None:
        """Keep what outlives slice `part` (its features start at `part.feature_lo`)."""
        lo, hi = part.feature_lo, part.feature_lo + part.n_features
        self.n_tokens = part.n_tokens
        self.count_F[lo:hi] = part.count_F
        peaks_FR = peak_tokens(part.top.tokens_GRW, part.top.offset_GR, N_PEAKS)
        self.peaks_FR[lo:hi, :peaks_FR.shape[1]] = peaks_FR.to(torch.int32)
        self.state_bytes = max(self.state_bytes, part.nbytes())
        if part.cooccur is not None:
            n_rows, local_E, feats_E = part.cooccur.entries()
            if self._cooccur_rows not in (None, n_rows):
                raise ValueError(f"slice at {lo} sampled {n_rows} co-occurrence rows, earlier "
                                 f"slices {self._cooccur_rows}: they must read the same rows")
            self._cooccur_rows = n_rows
            self._cooccur_parts[lo] = (local_E.to(torch.int32), feats_E + lo)

    def merge(self, other: SlicedAnalysis, ranges: Iterable[tuple[int, int]]) -> None:
        """Take the slices `ranges` from `other`, the summary of another rank's slices of the
        same dictionary and rows (nothing when `ranges` is empty)."""
        ranges = list(ranges)
        if not ranges:
            return
        for lo, hi in ranges:
            self.count_F[lo:hi] = other.count_F[lo:hi]
            self.peaks_FR[lo:hi] = other.peaks_FR[lo:hi]
            if lo in other._cooccur_parts:
                self._cooccur_parts[lo] = other._cooccur_parts[lo]
        self.n_tokens = other.n_tokens
        self.state_bytes = max(self.state_bytes, other.state_bytes)
        if other._cooccur_rows is not None:
            self._cooccur_rows = other._cooccur_rows

    def cooccur_entries(self) -> tuple[int, Tensor, Tensor] | None:
        """(rows sampled, local row [E], dictionary feature [E]) of all slices, or None when
        co-occurrence was skipped: the entries `RowSample.entries()` gives unsliced (in
        another order, which the counts do not see)."""
        if self._cooccur_rows is None:
            return None
        parts = [self._cooccur_parts[lo] for lo in sorted(self._cooccur_parts)]
        return (self._cooccur_rows, torch.cat([p[0] for p in parts]).long(),
                torch.cat([p[1] for p in parts]))


def analyze_sliced(make_batches: Callable[[], Iterable], encode_slice: EncodeSlice,
                   n_features: int, slice_size: int, opts: PassOptions, first_row: int = 0,
                   on_batch: Callable[[int], object] | None = None,
                   on_slice: Callable[[FeatureAnalysis], None] | None = None,
                   ranges: Sequence[tuple[int, int]] | None = None) -> SlicedAnalysis:
    """Both passes for each slice of `slice_size` features in order; `on_slice` gets each
    slice's `FeatureAnalysis` (e.g. to write it) before it is dropped. `ranges`: only these
    slices of `feature_ranges` (a rank's share; the summary holds only theirs)."""
    summary = SlicedAnalysis(n_features, slice_size)
    for lo, hi in (feature_ranges(n_features, slice_size) if ranges is None else ranges):
        def encode(x_BD: Tensor, lo: int = lo, hi: int = hi) -> Tensor | SparseCodes:
            return encode_slice(x_BD, lo, hi)

        part = analyze_batches(make_batches, encode, hi - lo, opts, first_row, on_batch,
                               feature_lo=lo)
        if on_slice is not None:
            on_slice(part)
        summary.add(part)
        del part  # before the next slice allocates its own state
    return summary
