"""The default offline corpus on this machine, and Hugging Face streaming from a local dataset."""

import itertools
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monosemantic.data import CorpusConfig, CorpusReport, iter_documents, pack_contexts
from monosemantic.data.local_corpus import default_roots
from monosemantic.errors import UserError

N_DOCS = 40


def _first(cfg: CorpusConfig, n: int = N_DOCS, report: CorpusReport | None = None):
    return list(itertools.islice(iter_documents(cfg, report), n))


def test_default_corpus_is_deterministic_real_text():
    cfg = CorpusConfig(shuffle_buffer=64)
    assert cfg.source == "local-python"
    report = CorpusReport()
    docs = _first(cfg, report=report)
    again = _first(cfg)
    other = _first(CorpusConfig(shuffle_buffer=64, seed=1))
    assert [(d.doc_id, d.origin, d.text) for d in docs] == \
        [(d.doc_id, d.origin, d.text) for d in again]
    assert [d.doc_id for d in docs] == list(range(N_DOCS))
    assert [d.origin for d in other] != [d.origin for d in docs]
    assert len({d.text for d in docs}) == N_DOCS
    assert all(0 < len(d.text) <= cfg.max_doc_chars for d in docs)
    roots = [str(r) for r in default_roots()]
    assert all(d.origin.startswith(tuple(roots)) for d in docs)
    assert report.files_read >= 1 and report.documents == N_DOCS


def test_default_corpus_packs_with_the_tiny_tokenizer(tiny_tok):
    docs = iter_documents(CorpusConfig(shuffle_buffer=16, max_documents=20))
    contexts = list(pack_contexts(tiny_tok, docs, ctx_len=128))
    assert len(contexts) > 20
    assert all(c.tokens.shape == (128,) and c.tokens[0] == tiny_tok.bos_token_id
               for c in contexts)
    assert set(int(d) for c in contexts for d in c.doc_ids.unique()) == set(range(-1, 20))


@pytest.fixture
def local_hf_dataset(tmp_path):
    """A dataset folder in the layout `datasets` reads from the hub (data/*.parquet)."""
    (tmp_path / "data").mkdir()
    texts = [f"Story number {i}: the fox jumps over the lazy dog {i} times." for i in range(30)]
    pq.write_table(pa.table({"story": texts[:20], "id": list(range(20))}),
                   tmp_path / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"story": texts[20:], "id": list(range(20, 30))}),
                   tmp_path / "data" / "train-00001-of-00002.parquet")
    return tmp_path, texts


def test_hf_streaming_reads_a_local_dataset(local_hf_dataset):
    path, texts = local_hf_dataset
    cfg = CorpusConfig(source=f"hf:{path}", text_field="story", shuffle=False)
    report = CorpusReport()
    docs = list(iter_documents(cfg, report))
    assert [d.text for d in docs] == texts
    assert docs[3].origin == f"hf:{path}#3"
    assert report.records_read == 30
    shuffled = list(iter_documents(CorpusConfig(source=f"hf:{path}", text_field="story",
                                                shuffle_buffer=8)))
    assert sorted(d.text for d in shuffled) == sorted(texts) and shuffled != docs


def test_hf_missing_field_bad_split_and_missing_dataset(local_hf_dataset, tmp_path):
    path, _ = local_hf_dataset
    with pytest.raises(UserError) as err:
        list(iter_documents(CorpusConfig(source=f"hf:{path}")))
    assert "'text'" in str(err.value) and "['story', 'id']" in str(err.value)
    with pytest.raises(UserError, match="validation"):
        list(iter_documents(CorpusConfig(source=f"hf:{path}", text_field="story",
                                         split="validation")))
    with pytest.raises(UserError, match="needs a dataset name"):
        list(iter_documents(CorpusConfig(source="hf:")))


def test_hf_jsonl_dataset_folder(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(5)))
    docs = list(iter_documents(CorpusConfig(source=f"hf:{tmp_path}", shuffle=False)))
    assert [d.text for d in docs] == [f"line {i}" for i in range(5)]


def test_hf_offline_gives_a_clear_error(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(UserError) as err:
        list(iter_documents(CorpusConfig(source="hf:org/name")))
    message = str(err.value)
    assert "seems offline" in message and "--corpus.source path/to/data.jsonl" in message


def test_local_prose_is_deterministic_real_english():
    cfg = CorpusConfig(source="local-prose", shuffle_buffer=64)
    report = CorpusReport()
    docs = _first(cfg, n=200, report=report)
    assert [(d.origin, d.text) for d in docs] == [(d.origin, d.text) for d in _first(cfg, 200)]
    assert [d.origin for d in _first(CorpusConfig(source="local-prose", seed=1))] != \
        [d.origin for d in docs[:N_DOCS]]
    assert all(d.origin.startswith("wikipedia:") and len(d.text.split()) >= 5 for d in docs)
    assert len({d.text for d in docs}) == 200
    # English prose: sentences, not code
    assert sum(d.text.count(". ") for d in docs) > 400
    assert not any("def " in d.text and "return" in d.text for d in docs)
    assert report.files_read == 1 and report.records_read >= 200


def test_local_mixed_holds_its_character_share_on_the_real_corpus():
    for fraction in (0.5, 0.25):
        cfg = CorpusConfig(source="local-mixed", prose_fraction=fraction)
        docs = _first(cfg, n=2000)
        prose_chars = sum(len(d.text) for d in docs if d.origin.startswith("wikipedia:"))
        assert abs(prose_chars / sum(len(d.text) for d in docs) - fraction) < 0.02
        assert any(not d.origin.startswith("wikipedia:") for d in docs)
        assert [d.origin for d in docs[:200]] == [d.origin for d in _first(cfg, n=200)]
