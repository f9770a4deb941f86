"""`FeatureDB`'s queries the browser builds on: latest explanations, explanation search (LIKE
wildcards taken literally), the explained count, the peak tokens of top examples."""

from __future__ import annotations

from collections import Counter

from test_interp_results import tiny_feature_db

from monosemantic.featuredb.reader import FeatureDB
from monosemantic.interp.results import ResultsDB


def test_explanations(tmp_path):
    path = tiny_feature_db(tmp_path)
    with ResultsDB(path) as out:
        out.add_explanation(0, "a", "old words", {})
        newest = out.add_explanation(0, "b", "numbers in 100% of lists", {})
        out.add_explanation(2, "a", "snake_case names", {})
        out.add_score(0, newest, "detection", 0.25, {})
        out.add_score(0, newest, "fuzzing", 0.75, {})
    with FeatureDB(path) as db:
        assert db.latest_explanations() == {0: "numbers in 100% of lists", 2: "snake_case names"}
        assert db.latest_explanations([2, 3]) == {2: "snake_case names"}
        assert db.latest_explanations([]) == {}
        assert db.n_explained() == 2
        hits = db.search_explanations(["NUMBERS", "100%"])
        assert hits == [{"feature": 0, "text": "numbers in 100% of lists", "explainer": "b",
                         "score": 0.75}]
        assert db.search_explanations(["e_c"]) == [
            {"feature": 2, "text": "snake_case names", "explainer": "a", "score": None}]
        assert db.search_explanations(["0%s"]) == []  # % is not a wildcard
        assert db.search_explanations(["s_a"]) == []  # nor is _
        assert [h["feature"] for h in db.search_explanations(["words"])] == [0]
        assert db.search_explanations(["", ""]) == []


def test_top_peak_tokens_count_the_top_examples(tmp_path):
    with FeatureDB(tiny_feature_db(tmp_path)) as db:
        expected = Counter()
        for f in range(db.n_features):
            for ex in db.examples(f, "top"):
                expected[(f, ex.token_ids[ex.peak])] += 1
        got = db.top_peak_tokens()
        assert {(f, t): n for f, t, n, _ in got} == dict(expected)
        assert set(db.vocab()) >= {t for _, t, _, _ in got}
