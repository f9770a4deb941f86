"""`iter_documents`: source texts -> split long texts -> drop empty -> dedupe -> shuffle buffer
-> numbered `Document`s. Lazy throughout, so a corpus of any size streams in bounded memory."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator

from monosemantic.data.documents import (
    HF_PREFIX,
    LOCAL_MIXED,
    LOCAL_PROSE,
    LOCAL_PYTHON_NAMES,
    CorpusConfig,
    CorpusReport,
    Document,
    split_text,
)
from monosemantic.errors import UserError


def iter_documents(cfg: CorpusConfig, report: CorpusReport | None = None) -> Iterator[Document]:
    """The corpus `cfg` describes, as documents numbered 0, 1, 2, ... in yield order.

    Pass a `CorpusReport` to collect counts (files read, skipped with reasons, duplicates); the
    caller prints `report.summary()` once done. Raises UserError when the source yields no
    document at all (raised lazily, once iteration reaches the end).
    """
    _check(cfg)
    report = report if report is not None else CorpusReport()
    report.source = cfg.source
    if cfg.source == LOCAL_MIXED:
        from monosemantic.data.local_corpus import iter_local_python
        from monosemantic.data.prose import iter_prose, mix_by_chars

        # Mixed after splitting, so one long source file cannot tip the balance for long.
        texts = mix_by_chars(_filtered(iter_local_python(cfg, report), cfg, report),
                             _filtered(iter_prose(cfg, report), cfg, report),
                             cfg.prose_fraction)
    else:
        texts = _filtered(_source_texts(cfg, report), cfg, report)
    if cfg.shuffle and cfg.shuffle_buffer > 1:
        # A string seed keeps this stream independent of the file-order shuffle's.
        texts = shuffle_buffered(texts, cfg.shuffle_buffer, random.Random(f"buffer-{cfg.seed}"))
    doc_id = 0
    for origin, text in texts:
        if cfg.max_documents is not None and doc_id >= cfg.max_documents:
            break
        report.documents += 1
        report.chars += len(text)
        yield Document(doc_id, text, origin)
        doc_id += 1
    if doc_id == 0:
        raise UserError(f"corpus {cfg.describe()} has no documents:\n{report.summary()}\n"
                        f"Point --corpus.source at text (files, a folder, hf:NAME) or lower "
                        f"--corpus.min-doc-chars.")


def documents_part(documents: Iterable[Document], part: tuple[int, int]) -> Iterator[Document]:
    """Part i of n of `documents`: those whose `doc_id` % n = i, keeping their ids. The n
    parts are disjoint and together are the corpus (how data-parallel ranks that stream from
    a model share it)."""
    index, n_parts = part
    if not 0 <= index < n_parts:
        raise ValueError(f"part {part} is not one of {n_parts} parts")
    return (doc for doc in documents if doc.doc_id % n_parts == index)


def _check(cfg: CorpusConfig) -> None:
    if cfg.max_documents is not None and cfg.max_documents <= 0:
        raise UserError(f"max_documents must be positive (got {cfg.max_documents}); "
                        f"leave it unset for the whole corpus")
    if cfg.shuffle_buffer < 0:
        raise UserError(f"shuffle_buffer must be >= 0 (got {cfg.shuffle_buffer})")
    if cfg.source == LOCAL_MIXED and not 0.0 < cfg.prose_fraction < 1.0:
        raise UserError(f"prose_fraction must be strictly between 0 and 1 (got "
                        f"{cfg.prose_fraction}); for one source alone use local-python or "
                        f"local-prose")
    if cfg.source in (LOCAL_PROSE, LOCAL_MIXED):
        from monosemantic.data.prose import prose_data_file

        prose_data_file()  # a missing package is reported before any model loads


def _source_texts(cfg: CorpusConfig, report: CorpusReport) -> Iterator[tuple[str, str]]:
    if cfg.source in LOCAL_PYTHON_NAMES:
        from monosemantic.data.local_corpus import iter_local_python

        return iter_local_python(cfg, report)
    if cfg.source == LOCAL_PROSE:
        from monosemantic.data.prose import iter_prose

        return iter_prose(cfg, report)
    if cfg.source.startswith(HF_PREFIX):
        from monosemantic.data.hf import iter_hf

        return iter_hf(cfg, report)
    from monosemantic.data.files import iter_files

    return iter_files(cfg, report)


def _filtered(texts: Iterable[tuple[str, str]], cfg: CorpusConfig,
              report: CorpusReport) -> Iterator[tuple[str, str]]:
    """Split long texts, then drop near-empty pieces and exact repeats (content hash)."""
    seen: set[bytes] = set()
    for origin, text in texts:
        pieces = split_text(text, cfg.max_doc_chars)
        if len(pieces) > 1:
            report.split_texts += 1
        for part, piece in enumerate(pieces):
            if len(piece.strip()) < max(cfg.min_doc_chars, 1):
                report.empty += 1
                continue
            if cfg.dedupe:
                digest = hashlib.blake2b(piece.encode("utf-8"), digest_size=16).digest()
                if digest in seen:
                    report.duplicates += 1
                    continue
                seen.add(digest)
            yield (f"{origin} [part {part + 1}/{len(pieces)}]" if len(pieces) > 1 else origin,
                   piece)


def shuffle_buffered(items: Iterable, size: int, rng: random.Random) -> Iterator:
    """Items in a seeded random order, holding at most `size` of them at a time: each new item
    takes the place of a randomly chosen held one, which is yielded."""
    held: list = []
    for item in items:
        if len(held) < size:
            held.append(item)
            continue
        slot = rng.randrange(size)
        yield held[slot]
        held[slot] = item
    rng.shuffle(held)
    yield from held
