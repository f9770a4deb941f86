"""Feature-sliced analysis: the database of a dictionary analysed in slices equals the one of
the unsliced analysis, every table; the state of a slice is its share of the full state."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers.feature_db import db_rows
from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.cooccur import cooccurrence_neighbours
from monosemantic.analysis.decoder import nearest_by_cosine
from monosemantic.analysis.featuremap import (
    feature_tokens,
    feature_tokens_from_peaks,
    label_clusters,
)
from monosemantic.analysis.onepass import PassOptions, analyze_batches
from monosemantic.analysis.run import AnalyzeConfig
from monosemantic.analysis.slices import (
    SLICE_ALIGN,
    SlicedAnalysis,
    analyze_sliced,
    choose_slice,
    feature_ranges,
    slice_bytes,
    state_bytes_per_feature,
)
from monosemantic.errors import UserError
from monosemantic.featuredb.writer import FeatureDBWriter, write_feature_db
from monosemantic.sae import SAEConfig, create_sae

N_ROWS, D, F = 500, 8, 12
OPTS = PassOptions(top_k=4, random_examples=3, zero_examples=2, n_intervals=3,
                   interval_examples=2, hist_bins=5, hist_decades=2.0, window_left=3,
                   window_right=2, cooccur_neighbours=3, cooccur_tokens=200,
                   cooccur_min_count=2)
VOLATILE_META = ("pass_seconds",)


def dyadic_rows(seed: int = 0):
    """Batches of rows whose activations are multiples of 1/2 in documents of random lengths
    (with dyadic SAE weights every code is exact, whatever order a GEMM sums in)."""
    gen = torch.Generator().manual_seed(seed)
    acts_ND = torch.randint(-4, 5, (N_ROWS, D), generator=gen) / 2
    tokens_N = torch.randint(0, 30, (N_ROWS,), generator=gen)
    lengths = torch.randint(3, 40, (N_ROWS,), generator=gen)
    doc_ids_N = torch.repeat_interleave(torch.arange(N_ROWS), lengths)[:N_ROWS]
    positions_N = torch.zeros(N_ROWS, dtype=torch.int64)
    size = 64
    return lambda: (RowBatch(acts_ND[i:i + size], tokens_N[i:i + size], doc_ids_N[i:i + size],
                             positions_N[i:i + size]) for i in range(0, N_ROWS, size))


def dyadic_sae(architecture: str, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    sae = create_sae(SAEConfig(architecture=architecture, d_in=D, n_features=F, k=4))
    with torch.no_grad():
        for p in (sae.W_enc, sae.W_dec, sae.b_dec):
            p.copy_(torch.randint(-8, 9, p.shape, generator=gen) / 8)
        sae.b_enc.copy_(torch.randint(-16, 1, (F,), generator=gen) / 8)
        sae.b_enc[F - 1] = -1000.0  # a feature that never fires (empty lists, no examples)
    sae.encode_block = 4  # slices compute their own blocks of encoder columns
    return sae


def decoder_tables(sae, peaks_tokens):
    """The decoder analyses the writer's `finish` stores (cosine neighbours, a fake map with
    clusters labelled from the top-example peak tokens)."""
    W_dec_FD = sae.W_dec.detach()
    neighbours = nearest_by_cosine(W_dec_FD, 3)
    cluster_F = torch.arange(F) % 3
    return neighbours, (W_dec_FD[:, :2].clone(), cluster_F), label_clusters(cluster_F,
                                                                             peaks_tokens)


def unsliced_db(path, sae, opts=OPTS):
    analysis = analyze_batches(dyadic_rows(), sae.encode, F, opts)
    cooccur = cooccurrence_neighbours(*analysis.cooccur.entries(), F, opts.cooccur_neighbours,
                                      opts.cooccur_min_count)[:2]
    tokens = feature_tokens(analysis.top.tokens_GRW, analysis.top.offset_GR, None)
    neighbours, coords, clusters = decoder_tables(sae, tokens)
    return write_feature_db(path, analysis, {"pass_seconds": 1.0}, None, None, neighbours,
                            coords, cooccur, clusters)


def sliced_db(path, sae, size, opts=OPTS):
    with FeatureDBWriter(path) as writer:
        summary = analyze_sliced(dyadic_rows(), sae.encode_slice, F, size, opts,
                                 on_slice=writer.add)
        cooccur = cooccurrence_neighbours(*summary.cooccur_entries(), F,
                                          opts.cooccur_neighbours, opts.cooccur_min_count)[:2]
        tokens = feature_tokens_from_peaks(summary.peaks_FR, None)
        neighbours, coords, clusters = decoder_tables(sae, tokens)
        return writer.finish({"pass_seconds": 2.0}, None, None, neighbours, coords, cooccur,
                             clusters)


def dump(path) -> dict[str, list[tuple]]:
    return db_rows(path, VOLATILE_META)


@pytest.mark.parametrize("architecture", ["relu", "topk", "matryoshka"])
def test_sliced_database_equals_unsliced(tmp_path, architecture):
    sae = dyadic_sae(architecture)
    want = dump(unsliced_db(tmp_path / "full.sqlite", sae))
    assert all(want[t] for t in ("features", "examples", "intervals", "histograms", "vocab",
                                 "neighbours", "map_coords"))
    kinds = {r[2] for r in want["neighbours"]}
    assert kinds == {"decoder_cosine", "cooccurrence"}
    for size in (5, 1, F):  # 5: slices [0, 5), [5, 10), [10, 12)
        got = dump(sliced_db(tmp_path / f"sliced{size}.sqlite", sae, size))
        for table in want:
            assert got[table] == want[table], (size, table)


def test_slice_state_is_its_share_of_the_full_state():
    sae = dyadic_sae("relu")
    full = analyze_batches(dyadic_rows(), sae.encode, F, OPTS)
    parts = []
    analyze_sliced(dyadic_rows(), sae.encode_slice, F, 5, OPTS, on_slice=parts.append)
    per_feature = state_bytes_per_feature(OPTS)
    assert full.nbytes() - full.cooccur.nbytes() == F * per_feature
    assert [p.nbytes() - p.cooccur.nbytes() for p in parts] == [5 * per_feature,
                                                                5 * per_feature,
                                                                2 * per_feature]
    # Without pass 2 the formula drops the interval lists and the histogram.
    opts = dataclasses.replace(OPTS, n_intervals=0)
    one = analyze_batches(dyadic_rows(), sae.encode, F, opts)
    assert one.nbytes() - one.cooccur.nbytes() == F * state_bytes_per_feature(opts)


def test_defaults_state_is_the_documented_15_9_kb_per_feature():
    assert state_bytes_per_feature(PassOptions()) == 15908


def test_automatic_slice_fits_the_budget():
    opts, batch = PassOptions(), 1024
    assert choose_slice(16384, 0, 8 * 2**30, opts, batch) == 16384  # fits: all at once
    assert choose_slice(2**20, 0, 0, opts, batch) == 2**20  # no budget
    budget = 8 * 2**30
    size = choose_slice(2**20, 0, budget, opts, batch)
    assert size % SLICE_ALIGN == 0
    assert slice_bytes(size, opts, batch) <= budget < slice_bytes(size + SLICE_ALIGN, opts,
                                                                   batch)
    # A budget below one aligned slice: the largest slice that fits, at least one feature.
    tiny = slice_bytes(100, opts, batch)
    assert choose_slice(2**20, 0, tiny, opts, batch) == 100
    assert choose_slice(2**20, 0, 1, opts, batch) == 1
    assert choose_slice(12, 5, budget, opts, batch) == 5
    assert choose_slice(12, 50, budget, opts, batch) == 12
    assert feature_ranges(12, 5) == [(0, 5), (5, 10), (10, 12)]


@pytest.mark.parametrize("field", ["feature_slice", "max_pass_memory", "feature_map_max"])
def test_negative_slice_options_are_user_errors(field):
    cfg = AnalyzeConfig(run="run", **{field: -1})
    with pytest.raises(UserError, match=field):
        cfg.validate(cfg.batch_size)
    with pytest.raises(UserError, match="feature_slice"):
        choose_slice(12, -5, 0, OPTS, 64)


def test_an_error_while_writing_publishes_nothing(tmp_path):
    sae = dyadic_sae("relu")
    target = tmp_path / "features.sqlite"
    with pytest.raises(RuntimeError, match="encode failed"):
        with FeatureDBWriter(target) as writer:
            def failing(x_BD, lo, hi):
                if lo > 0:
                    raise RuntimeError("encode failed")
                return sae.encode_slice(x_BD, lo, hi)

            analyze_sliced(dyadic_rows(), failing, F, 5, OPTS, on_slice=writer.add)
    assert list(tmp_path.iterdir()) == []
    with FeatureDBWriter(target) as writer:  # left without finish: nothing either
        writer.add(analyze_batches(dyadic_rows(), sae.encode, F, OPTS))
    assert list(tmp_path.iterdir()) == []


def test_slices_must_come_in_feature_order(tmp_path):
    sae = dyadic_sae("relu")
    parts = []
    analyze_sliced(dyadic_rows(), sae.encode_slice, F, 5, OPTS, on_slice=parts.append)
    with FeatureDBWriter(tmp_path / "features.sqlite") as writer:
        writer.add(parts[0])
        with pytest.raises(ValueError, match="feature order"):
            writer.add(parts[2])


def ranked_db(path, sae, size, world, opts=OPTS):
    """`sliced_db` as `analysis.ranks` makes it: rank r analyses slices r, r + world, ... into
    its part database; the summaries merge; the parts are copied in feature order."""
    ranges = feature_ranges(F, size)
    summaries = []
    for rank in range(world):
        with FeatureDBWriter(path.with_name(f"part{rank}.sqlite"), part=True) as part:
            summaries.append(analyze_sliced(dyadic_rows(), sae.encode_slice, F, size, opts,
                                            on_slice=part.add, ranges=ranges[rank::world]))
            part.finish_part()
    merged = SlicedAnalysis(F, size)
    for rank, summary in enumerate(summaries):
        merged.merge(summary, ranges[rank::world])
    with FeatureDBWriter(path) as writer:
        for i, (lo, hi) in enumerate(ranges):
            writer.add_part(path.with_name(f"part{i % world}.sqlite"), lo, hi)
        cooccur = cooccurrence_neighbours(*merged.cooccur_entries(), F,
                                          opts.cooccur_neighbours, opts.cooccur_min_count)[:2]
        neighbours, coords, clusters = decoder_tables(sae, feature_tokens_from_peaks(
            merged.peaks_FR, None))
        return writer.finish({"pass_seconds": 3.0}, None, None, neighbours, coords, cooccur,
                             clusters)


@pytest.mark.parametrize(("size", "world"), [(5, 2), (3, 3), (1, 5)])
def test_slices_of_several_ranks_merge_into_the_unsliced_database(tmp_path, size, world):
    sae = dyadic_sae("relu")
    want = dump(unsliced_db(tmp_path / "full.sqlite", sae))
    got = dump(ranked_db(tmp_path / "ranked.sqlite", sae, size, world))
    for table in want:
        assert got[table] == want[table], table


def test_a_part_holds_only_its_slices(tmp_path):
    sae = dyadic_sae("relu")
    with FeatureDBWriter(tmp_path / "part.sqlite", part=True) as part:
        analyze_sliced(dyadic_rows(), sae.encode_slice, F, 5, OPTS, on_slice=part.add,
                       ranges=[(0, 5), (10, 12)])
        part.finish_part()
    rows = db_rows(tmp_path / "part.sqlite")
    assert [r[1] for r in rows["features"]] == [0, 1, 2, 3, 4, 10, 11]
    with FeatureDBWriter(tmp_path / "features.sqlite") as writer:
        with pytest.raises(ValueError, match="feature order"):
            writer.add_part(tmp_path / "part.sqlite", 10, 12)  # [0, 10) first
        with pytest.raises(UserError, match="every rank sees"):
            writer.add_part(tmp_path / "rank1.sqlite", 0, 5)  # on another machine
    assert not (tmp_path / "rank1.sqlite").exists()
