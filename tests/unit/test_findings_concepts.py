"""Concepts from decoded tokens, their F1 counts on sparse codes, and the coverage fits."""

import numpy as np
import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.findings.concept_counts import ConceptCounts, Incidence
from monosemantic.findings.concepts import (
    Concept,
    ConceptOptions,
    HeldText,
    build_concepts,
    find_words,
    imported_modules,
    segments,
    spread,
)
from monosemantic.findings.coverage import binned_curve, fit_coverage
from monosemantic.findings.logistic import fit_logistic, sigmoid
from monosemantic.sae.kernels import SparseCodes


def _text(docs: list[list[str]]) -> HeldText:
    """Each document: a BOS row (position 0) then its pieces; token ids by piece."""
    pieces, doc_ids, positions = [], [], []
    for d, doc in enumerate(docs):
        pieces += ["<bos>", *doc]
        doc_ids += [d] * (len(doc) + 1)
        positions += list(range(len(doc) + 1))
    vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces))}
    return HeldText(np.array([vocab[p] for p in pieces]), np.array(doc_ids),
                    np.array(positions), pieces)


def test_segments_break_at_documents_and_skip_bos():
    text = _text([["im", "port"], ["x"]])
    assert segments(text) == [(1, 3), (4, 5)]
    # A gap in positions (a row missing) starts a new segment too.
    text.positions_N[2] = 5
    assert segments(text) == [(1, 2), (2, 3), (4, 5)]


def test_words_know_their_first_and_last_token_and_do_not_cross_documents():
    text = _text([["import", " nu", "mpy", " as", " np", "\n"], ["py", "\n", "def"]])
    found = find_words(text)
    assert found.spans["numpy"] == [(2, 3)]
    assert found.spans["import"] == [(1, 1)]
    assert found.spans["py"] == [(8, 8)]  # "mpy" of doc 0 and "py" of doc 1 never join
    assert found.libraries == {"numpy"}


def test_imported_modules_of_both_forms():
    src = "import os, sys.path as p\nfrom collections import abc\n  import torch.nn\n" \
          "from . import sibling\nx = 'import this'\n"
    assert imported_modules(src) == {"os", "sys", "collections", "torch"}


def test_concepts_kinds_counts_and_duplicates():
    doc = ["import", " nu", "mpy", "\n", "def", " f", "():", " nu", "mpy", ".", "Array", "\n",
           "import", " os", "\n"]
    text = _text([doc, doc])  # rows 0 and 16: BOS
    concepts, duplicates = build_concepts(text, ConceptOptions(min_count=2))
    by_name = {c.name: c for c in concepts}
    # numpy occurs twice per document: every token of it belongs to the library concept.
    assert by_name["library:numpy"].rows_K.tolist() == [2, 3, 8, 9, 18, 19, 24, 25]
    assert by_name["class:library"].rows_K.tolist() == [2, 3, 8, 9, 14, 18, 19, 24, 25, 30]
    # the word's concept is its last token; identical to token 'mpy', which is dropped
    assert by_name["word:numpy"].rows_K.tolist() == [3, 9, 19, 25]
    assert not any(n.startswith("token:'mpy'") for n in by_name)
    # os: its library concept comes first, the identical word and token are dropped
    assert by_name["library:os"].rows_K.tolist() == [14, 30] and "word:os" not in by_name
    # Array is the only capitalised word: its concept is the class's, listed first
    assert by_name["class:capitalised"].rows_K.tolist() == [11, 27]
    assert "capitalised:Array" not in by_name
    assert duplicates >= 5
    assert by_name["keyword:def"].kind == "keyword" and by_name["keyword:def"].count == 2
    assert by_name["class:keyword"].rows_K.tolist() == [1, 5, 13, 17, 21, 29]
    newline = f"token:'\\n'#{text.tokens_N[4]}"
    assert by_name[newline].rows_K.tolist() == [4, 12, 15, 20, 28, 31]
    assert all(c.count >= 2 for c in concepts)
    none, _ = build_concepts(text, ConceptOptions(min_count=100))
    assert none == []


def test_spread_keeps_concepts_across_the_frequency_ranking():
    concepts = [Concept(f"c{i}", "token", np.arange(i + 1)) for i in range(10)]
    kept = spread(concepts, 4)
    assert [c.count for c in kept] == [1, 4, 7, 10]
    assert spread(concepts, 20) == concepts


def _codes(dense_BF: torch.Tensor) -> SparseCodes:
    return SparseCodes.positive(dense_BF)


def test_a_feature_that_is_a_concept_has_f1_one_and_others_their_counts():
    n = 12
    exact = Concept("exact", "token", np.array([1, 4, 9]))
    half = Concept("half", "token", np.array([0, 2, 5, 7]))
    incidence = Incidence([exact, half], n)
    f_NF = torch.zeros(n, 3)
    f_NF[[1, 4, 9], 0] = torch.tensor([0.5, 2.0, 1.0])  # feature 0 = concept "exact"
    f_NF[[0, 2, 3, 6], 1] = 1.0  # feature 1: 2 of half's 4, plus 2 others
    f_NF[:, 2] = 0.05  # feature 2 fires everywhere, weakly
    counts = ConceptCounts(incidence, 3)
    for lo, hi in ((0, 5), (5, 12)):  # two batches: rows are offset correctly
        counts.update(_codes(f_NF[lo:hi]))
    best = counts.best()
    assert best.feature_C[0] == 0 and best.f1_C[0] == pytest.approx(1.0)
    assert (best.precision_C[0], best.recall_C[0]) == (1.0, 1.0)
    # half: feature 1 has tp 2, fires 4 -> F1 0.5; feature 2 has tp 4, fires 12 -> 0.5;
    # the tie goes to the lower index
    assert best.feature_C[1] == 1 and best.f1_C[1] == pytest.approx(0.5)
    assert counts.tp_CF.tolist() == [[3, 0, 3], [0, 2, 4]]
    # above a threshold of 0.1, feature 2 never fires
    thresholded = ConceptCounts(incidence, 3, threshold=0.1)
    thresholded.update(_codes(f_NF))
    assert thresholded.fires_F.tolist() == [3, 4, 0]


def test_counts_need_every_token_and_no_more():
    incidence = Incidence([Concept("a", "token", np.array([0]))], 4)
    counts = ConceptCounts(incidence, 2)
    counts.update(_codes(torch.ones(3, 2)))
    with pytest.raises(ValueError, match="counted 3 of 4"):
        counts.best()
    with pytest.raises(ValueError, match="more than the 4 tokens"):
        counts.update(_codes(torch.ones(2, 2)))


def test_logistic_fit_recovers_a_known_sigmoid():
    gen = np.random.default_rng(0)
    x = gen.uniform(-4, 0, size=(20000, 2))
    true = np.array([3.0, 2.0, -1.0])
    y = gen.random(20000) < sigmoid(true[0] + x @ true[1:])
    fit = fit_logistic(x, y, ("a", "b"), ridge=0.0)
    assert fit.converged and not fit.separated
    np.testing.assert_allclose(fit.coef, true, atol=0.15)


def test_logistic_fit_of_separated_or_constant_outcomes():
    x = np.linspace(-3, -1, 50)[:, None]
    fit = fit_logistic(x, x[:, 0] > -2, ("x",), ridge=1e-2)
    assert fit.separated and np.isfinite(fit.coef).all() and fit.coef[1] > 0
    assert fit.predict(np.array([[-2.5], [-1.5]])).round().tolist() == [0.0, 1.0]
    with pytest.raises(UserError, match="same outcome"):
        fit_logistic(x, np.ones(50), ("x",))


def test_coverage_fits_find_the_half_frequency_of_each_size():
    gen = np.random.default_rng(1)
    freq = 10 ** gen.uniform(-5, -1, size=6000)
    sizes = [256, 1024]
    half = {256: 1e-2, 1024: 1e-3}  # 50% coverage at these frequencies, slope 3 per decade
    covered = np.stack([gen.random(6000) < sigmoid(3 * (np.log10(freq) - np.log10(half[s])))
                        for s in sizes])
    fits = fit_coverage(freq, sizes, covered, ridge=0.0)
    for s, fit in zip(sizes, fits["per_size"]):
        assert fit["frequency_at_half"]["within_measured"]
        assert np.log10(fit["frequency_at_half"]["frequency"]) == pytest.approx(
            np.log10(half[s]), abs=0.1)
        assert fit["coefficients"]["log10_frequency"] == pytest.approx(3.0, rel=0.15)
    pooled = fits["pooled"]
    assert pooled["coefficients"]["log10_F"] > 0  # larger dictionaries cover rarer concepts
    assert [np.log10(h["frequency"]) for h in pooled["frequency_at_half"]] == pytest.approx(
        [-2.0, -3.0], abs=0.15)


def test_a_size_covering_everything_records_why_it_has_no_fit():
    freq = np.geomspace(1e-4, 1e-1, 40)
    covered = np.stack([freq > 1e-2, np.ones(40, dtype=bool)])
    fits = fit_coverage(freq, [16, 32], covered, ridge=1e-3)
    assert "error" not in fits["per_size"][0]
    assert "same outcome" in fits["per_size"][1]["error"]
    assert "coefficients" in fits["pooled"]


def test_binned_curve_shares_per_size():
    freq = np.array([1e-4, 2e-4, 5e-3, 6e-3, 7e-3])
    covered = np.array([[0, 0, 1, 0, 1], [0, 1, 1, 1, 1]], dtype=bool)

    class Best:
        def __init__(self, f1):
            self.f1_C = np.asarray(f1, dtype=float)

    curve = binned_curve(freq, covered, [Best(covered[0]), Best(covered[1])], 1)
    assert [b["n_concepts"] for b in curve] == [2, 3]  # [1e-4, 1e-3) and [1e-3, 1e-2)
    assert curve[0]["covered_share"] == [0.0, 0.5]
    assert curve[1]["covered_share"] == pytest.approx([2 / 3, 1.0])
    assert curve[1]["frequency_range"] == pytest.approx([1e-3, 1e-2])
