"""Local files (.txt, .jsonl, .parquet), directories, and the errors for bad input."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monosemantic.data import CorpusConfig, CorpusReport, iter_documents
from monosemantic.errors import UserError


def _docs(source: Path, report: CorpusReport | None = None, **kwargs):
    cfg = CorpusConfig(source=str(source), shuffle=False, **kwargs)
    return list(iter_documents(cfg, report))


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_txt_units(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first para\nstill first\n\nsecond para\n")
    assert [d.text for d in _docs(path)] == [path.read_text()]
    assert [d.text for d in _docs(path, txt_unit="paragraph")] == \
        ["first para\nstill first", "second para\n"]
    assert [d.text for d in _docs(path, txt_unit="line")] == \
        ["first para", "still first", "second para"]


def test_jsonl_reads_the_chosen_field(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"body": "alpha", "id": 1}, {"body": "beta", "id": 2},
                                         {"body": None, "id": 3}, {"body": "alpha", "id": 4}])
    report = CorpusReport()
    docs = _docs(path, report, text_field="body")
    assert [(d.doc_id, d.text) for d in docs] == [(0, "alpha"), (1, "beta")]
    assert docs[1].origin == f"{path}:2"
    assert report.duplicates == 1 and report.records_read == 3


def test_jsonl_bad_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "good"}\nnot json\n"a string"\n{"text": "caf\xe9"}\n')
    report = CorpusReport()
    assert [d.text for d in _docs(path, report)] == ["good"]
    assert report.skipped == {"jsonl line not valid JSON": 1, "jsonl line not a JSON object": 1,
                              "jsonl line not UTF-8": 1}
    assert f"{path}:2" in report.skipped_examples["jsonl line not valid JSON"]


def test_jsonl_missing_field_names_field_file_and_fields(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"content": "x", "meta": 1}])
    with pytest.raises(UserError) as err:
        _docs(path)
    message = str(err.value)
    assert "'text'" in message and str(path) in message and "['content', 'meta']" in message


def test_jsonl_non_text_field_is_a_user_error(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"text": 5}])
    with pytest.raises(UserError, match="holds int"):
        _docs(path)


def test_parquet_column_and_missing_column(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": ["one", "two", None, "three"], "n": [1, 2, 3, 4]}), path)
    assert [d.text for d in _docs(path, text_field="content")] == ["one", "two", "three"]
    with pytest.raises(UserError) as err:
        _docs(path)
    assert "'text'" in str(err.value) and str(path) in str(err.value)
    assert "['content', 'n']" in str(err.value)


def test_directory_is_read_recursively_sorted_and_skips_bad_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("zeta text")
    (tmp_path / "a.txt").write_text("alpha text")
    _jsonl(tmp_path / "b" / "m.jsonl", [{"text": "mid text"}])
    (tmp_path / "bad.txt").write_bytes("\xff\xfe latin \xe9".encode("latin-1"))
    (tmp_path / "notes.csv").write_text("ignored,1\n")
    report = CorpusReport()
    docs = _docs(tmp_path, report)
    assert [d.text for d in docs] == ["alpha text", "mid text", "zeta text"]
    assert report.skipped == {"not UTF-8": 1} and report.files_read == 3
    assert str(tmp_path / "bad.txt") in report.summary()
    shuffled = list(iter_documents(CorpusConfig(source=str(tmp_path), seed=5)))
    assert sorted(d.text for d in shuffled) == sorted(d.text for d in docs)


def test_missing_path_and_wrong_type_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        _docs(tmp_path / "missing.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported file type"):
        _docs(tmp_path / "x.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no"):
        _docs(tmp_path / "empty")


def test_file_of_blank_records_is_an_empty_corpus(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"text": ""}, {"text": "  "}])
    with pytest.raises(UserError, match="no documents"):
        _docs(path)
