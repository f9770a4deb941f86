"""Corpus pipeline: config round trip, splitting, dedupe, determinism, skips, empty corpus."""

import argparse
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from monosemantic.config import (
    add_dataclass_arguments,
    dataclass_from_namespace,
    from_dict,
    to_dict,
)
from monosemantic.data import CorpusConfig, CorpusReport, documents_part, iter_documents
from monosemantic.data.corpus import shuffle_buffered
from monosemantic.data.documents import split_text
from monosemantic.data.local_corpus import list_candidate_files
from monosemantic.errors import UserError


def _write_tree(root: Path, n: int = 40) -> Path:
    """A small fake 'site-packages': distinct .py/.md files, a duplicate, noise to skip."""
    (root / "pkg" / "sub").mkdir(parents=True)
    for i in range(n):
        folder = root / "pkg" if i % 2 else root / "pkg" / "sub"
        ext = ".py" if i % 3 else ".md"
        body = f"def f{i}():\n    '''Doc {i}.'''\n    return {i}\n"
        (folder / f"mod{i:02d}{ext}").write_text(body)
    (root / "pkg" / "copy_of_mod01.py").write_text((root / "pkg" / "mod01.py").read_text())
    (root / "pkg" / "empty.py").write_text("   \n")
    (root / "pkg" / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "pkg" / "blob.txt").write_bytes(b"abc\x00def")
    (root / "pkg" / "image.png").write_bytes(b"\x89PNG")
    (root / "pkg-1.0.dist-info").mkdir()
    (root / "pkg-1.0.dist-info" / "top_level.txt").write_text("pkg\n")
    return root


def _local(root: Path, **kwargs) -> CorpusConfig:
    return CorpusConfig(source="local-python", local_roots=(str(root),), **kwargs)


def test_config_round_trips_and_describes():
    cfg = CorpusConfig(source="hf:org/name", hf_config="en", split="validation", seed=3,
                       extensions=(".py",), max_documents=10)
    assert from_dict(CorpusConfig, to_dict(cfg)) == cfg
    assert "hf:org/name en split validation" in cfg.describe()
    assert "seed 3" in cfg.describe()
    assert "standard library" in CorpusConfig().describe()


@pytest.mark.parametrize("max_chars", [5, 17, 40, 1000])
def test_split_text_keeps_text_and_bounds_pieces(max_chars):
    text = "short line\n" + "x" * 50 + "\nlast line without newline"
    pieces = split_text(text, max_chars)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= max_chars for p in pieces)
    if max_chars >= 17:  # room for whole lines: cuts fall at line ends outside the long line
        assert pieces[0].startswith("short line\n")


def test_shuffle_buffer_is_a_seeded_permutation():
    items = list(range(100))
    a = list(shuffle_buffered(items, 10, random.Random(1)))
    b = list(shuffle_buffered(items, 10, random.Random(1)))
    c = list(shuffle_buffered(items, 10, random.Random(2)))
    assert a == b and sorted(a) == items and a != items and a != c


def test_local_python_is_deterministic_deduped_and_counts_skips(tmp_path):
    root = _write_tree(tmp_path)
    report = CorpusReport()
    docs = list(iter_documents(_local(root, seed=0), report))
    again = list(iter_documents(_local(root, seed=0)))
    other = list(iter_documents(_local(root, seed=1)))

    assert [(d.doc_id, d.text, d.origin) for d in docs] == \
        [(d.doc_id, d.text, d.origin) for d in again]
    assert [d.doc_id for d in docs] == list(range(len(docs)))
    assert [d.text for d in other] != [d.text for d in docs]
    assert sorted(d.text for d in other) == sorted(d.text for d in docs)
    # 40 distinct modules; the copy, the blank file, and the skipped files are not documents.
    assert len(docs) == 40 and len({d.text for d in docs}) == 40
    assert report.duplicates == 1 and report.empty == 1
    assert report.skipped == {"not UTF-8": 1, "binary (contains NUL bytes)": 1}
    assert not any("dist-info" in d.origin or d.origin.endswith(".png") for d in docs)
    assert "latin1.txt" in report.summary()


def test_shuffle_false_keeps_sorted_file_order(tmp_path):
    root = _write_tree(tmp_path, n=6)
    docs = list(iter_documents(_local(root, shuffle=False, extensions=(".py",))))
    assert [d.origin for d in docs] == sorted(d.origin for d in docs)


def test_candidate_listing_is_sorted_and_filtered(tmp_path):
    root = _write_tree(tmp_path, n=6)
    files = list_candidate_files([root], (".py", ".md"))
    assert files == sorted(files)
    assert all(f.endswith((".py", ".md")) for f in files)


def test_long_files_become_several_documents(tmp_path):
    (tmp_path / "big.py").write_text("".join(f"line_{i} = {i}\n" for i in range(200)))
    report = CorpusReport()
    docs = list(iter_documents(_local(tmp_path, max_doc_chars=300, shuffle=False), report))
    assert len(docs) > 5 and all(len(d.text) <= 300 for d in docs)
    assert "".join(d.text for d in docs) == (tmp_path / "big.py").read_text()
    assert report.split_texts == 1 and "[part 1/" in docs[0].origin


def test_max_documents_limits_the_stream(tmp_path):
    root = _write_tree(tmp_path)
    docs = list(iter_documents(_local(root, max_documents=7)))
    assert [d.doc_id for d in docs] == list(range(7))


def test_empty_corpus_is_a_user_error(tmp_path):
    (tmp_path / "blank.py").write_text("\n\n")
    with pytest.raises(UserError, match="no documents"):
        list(iter_documents(_local(tmp_path)))


def test_missing_local_root_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        list(iter_documents(_local(tmp_path / "nope")))


@dataclass
class _Wrapper:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """The corpus."""


def test_corpus_options_nest_into_a_command_line():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, _Wrapper)
    ns = parser.parse_args(["--corpus.source", "data.jsonl", "--corpus.text-field", "body",
                            "--corpus.max-documents", "2k", "--corpus.extensions", ".py", ".rst",
                            "--corpus.txt-unit", "line", "--corpus.shuffle", "false"])
    cfg = dataclass_from_namespace(_Wrapper, ns).corpus
    assert cfg == CorpusConfig(source="data.jsonl", text_field="body", max_documents=2000,
                               extensions=(".py", ".rst"), txt_unit="line", shuffle=False)
    assert "Field (.jsonl, Hugging Face)" in parser.format_help()


@pytest.mark.parametrize("n_parts", [1, 2, 3])
def test_document_parts_are_disjoint_and_make_the_corpus(tmp_path, n_parts):
    cfg = _local(_write_tree(tmp_path))
    whole = [(d.doc_id, d.text) for d in iter_documents(cfg)]
    parts = [[(d.doc_id, d.text) for d in documents_part(iter_documents(cfg), (i, n_parts))]
             for i in range(n_parts)]
    assert all(doc_id % n_parts == i for i, part in enumerate(parts) for doc_id, _ in part)
    assert sorted(doc for part in parts for doc in part) == sorted(whole)
    with pytest.raises(ValueError):
        documents_part(iter_documents(cfg), (n_parts, n_parts))


def test_context_batches_of_a_part_hold_only_its_documents(tmp_path, tiny_tok):
    from types import SimpleNamespace

    from monosemantic.activations.model_rows import context_batches

    cfg = _local(_write_tree(tmp_path))
    lm = SimpleNamespace(tokenizer=tiny_tok)  # context_batches reads only the tokenizer
    seen = []
    for i in range(2):
        doc_ids = torch.cat([b.doc_ids.flatten() for b in
                             context_batches(lm, cfg, 32, 4, part=(i, 2))])
        real = doc_ids[doc_ids >= 0].unique()
        assert len(real) and bool((real % 2 == i).all())
        seen.append(set(real.tolist()))
    whole = torch.cat([b.doc_ids.flatten() for b in context_batches(lm, cfg, 32, 4)])
    assert seen[0] | seen[1] == set(whole[whole >= 0].unique().tolist())
