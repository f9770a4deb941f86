"""The prose source (on a stand-in summaries file), its missing-package error, and the
character-share mix of two text streams."""

import importlib.metadata
import json
import random
from pathlib import Path

import pytest

from monosemantic.data import CorpusConfig, CorpusReport, iter_documents, prose
from monosemantic.data.prose import PROSE_INSTALL, iter_prose, mix_by_chars
from monosemantic.errors import UserError


@pytest.fixture
def summaries(tmp_path, monkeypatch) -> dict:
    """A stand-in for the package's summaries file: 30 articles and one without text."""
    articles = {f"Place {i:02d}": {"title": f"Place {i:02d}", "topic": "Geography",
                                   "extract": f"Place {i:02d} is a town on river {i}."}
                for i in range(30)}
    articles["Broken"] = {"title": "Broken", "description": "no extract"}
    path = tmp_path / "summaries_en-us.json"
    path.write_text(json.dumps(articles), encoding="utf-8")
    monkeypatch.setattr(prose, "prose_data_file", lambda: path)
    return articles


def test_prose_yields_every_article_text_in_title_order_unshuffled(summaries):
    report = CorpusReport()
    texts = list(iter_prose(CorpusConfig(source="local-prose", shuffle=False), report))
    assert [origin for origin, _ in texts] == [f"wikipedia:Place {i:02d}" for i in range(30)]
    assert texts[3][1] == "Place 03 is a town on river 3."
    assert report.records_read == 30 and report.files_read == 1
    assert report.skipped == {"article without a text extract": 1}


def test_prose_shuffle_is_seeded(summaries):
    def order(seed):
        return [o for o, _ in iter_prose(CorpusConfig(source="local-prose", seed=seed),
                                         CorpusReport())]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(1))


def test_local_prose_documents_come_from_the_summaries(summaries):
    docs = list(iter_documents(CorpusConfig(source="local-prose", shuffle_buffer=8)))
    assert [d.doc_id for d in docs] == list(range(30))
    assert {d.text for d in docs} == {a["extract"] for a in summaries.values() if "extract" in a}


def test_missing_package_says_how_to_install_it(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    for source in ("local-prose", "local-mixed"):
        # Raised on the first next(): before a harvest loads its model.
        with pytest.raises(UserError, match=PROSE_INSTALL.replace(" ", r"\s")):
            next(iter_documents(CorpusConfig(source=source)))


def test_mixed_prose_fraction_out_of_range_is_a_user_error():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(UserError, match="prose_fraction"):
            next(iter_documents(CorpusConfig(source="local-mixed", prose_fraction=bad)))


def _stream(tag: str, n: int, rng: random.Random) -> list[tuple[str, str]]:
    return [(f"{tag}{i}", "x" * rng.randint(50, 3000)) for i in range(n)]


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_mix_holds_the_character_share(fraction):
    rng = random.Random(0)
    code, text = _stream("code", 2000, rng), _stream("prose", 2000, rng)
    mixed = list(mix_by_chars(code, text, fraction))[:1500]  # both streams still going
    prose_chars = sum(len(t) for o, t in mixed if o.startswith("prose"))
    assert abs(prose_chars / sum(len(t) for _, t in mixed) - fraction) < 0.01
    assert mixed == list(mix_by_chars(code, text, fraction))[:1500]
    # each stream keeps its own order
    assert [o for o, _ in mixed if o.startswith("code")] == \
        [o for o, _ in code][:sum(o.startswith("code") for o, _ in mixed)]


def test_mix_goes_on_with_one_stream_when_the_other_ends():
    rng = random.Random(1)
    code, text = _stream("code", 100, rng), _stream("prose", 5, rng)
    mixed = list(mix_by_chars(code, text, 0.5))
    assert sorted(mixed) == sorted(code + text)
    assert all(o.startswith("code") for o, _ in mixed[-50:])


def test_mix_rejects_a_fraction_outside_0_1():
    with pytest.raises(ValueError):
        next(mix_by_chars([("a", "x")], [("b", "y")], 1.0))


def test_local_mixed_interleaves_code_and_prose(summaries, tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    for i in range(60):
        (root / f"mod{i:02d}.py").write_text(f"def f{i}():\n    return {i}\n" * 3)
    cfg = CorpusConfig(source="local-mixed", local_roots=(str(root),), shuffle_buffer=4)
    docs = list(iter_documents(cfg))
    assert [d.doc_id for d in docs] == list(range(90))
    assert sum(d.origin.startswith("wikipedia:") for d in docs) == 30
    assert any(Path(d.origin).parent == root for d in docs[:10])
    assert any(d.origin.startswith("wikipedia:") for d in docs[:10])
    assert [(d.origin, d.text) for d in docs] == \
        [(d.origin, d.text) for d in iter_documents(cfg)]
    assert "local-mixed (50% of characters from local-prose" in cfg.describe()
