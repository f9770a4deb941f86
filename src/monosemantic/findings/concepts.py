"""Concepts defined offline from the held-out tokens' text, each with the tokens it occurs on.

The held-out rows (corpus order) are decoded token by token with the run's tokenizer and
joined into text segments (consecutive text tokens of one document). A *word* is an
identifier-like run of characters, `[A-Za-z_][A-Za-z0-9_]*`. The concepts, in this order:

- `class:keyword`, `class:capitalised`, `class:library`: the last token of every Python
  keyword, of every word starting with a capital letter, and every token of every
  occurrence of an imported library's name (below);
- `library:X`: every token of every occurrence of the word X, for each top-level module X
  imported in the text (`import X`, `import X.y as z`, `from X import ...`; relative imports
  skipped);
- `keyword:w`, `capitalised:w`, `word:w`: the last token of every occurrence of the word w
  (whole-word matches; for a word of one token this is the token there), the kind saying
  whether w is a Python keyword, starts with a capital, or neither;
- `token:'text'#id`: every text token with that id.

A concept needs at least `min_count` occurrences; a concept occurring on exactly the same
tokens as an earlier one is dropped (e.g. a one-token word whose token appears nowhere
else), so no mask is counted twice. Its frequency is occurrences / held-out tokens (all rows
measured, BOS included).
"""

from __future__ import annotations

import keyword
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from monosemantic.errors import UserError
from monosemantic.findings.holdout import Holdout

KINDS = ("class", "library", "keyword", "capitalised", "word", "token")
"""Concept kinds, in the order concepts are listed (and deduplicated)."""

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]+)", re.MULTILINE)
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


@dataclass
class ConceptOptions:
    """Which concepts are measured."""

    min_count: int = 5
    """A concept needs at least this many occurrences among the measured held-out tokens."""
    max_concepts: int = 4000
    """At most this many concepts (memory: concepts × features counts per SAE); beyond it,
    concepts evenly spaced in the ranking by frequency are kept."""
    tokenizer: str | None = None
    """Model whose tokenizer decodes the store's token ids (a spec as for `--model`; default:
    the model the runs were trained on)."""


@dataclass
class Concept:
    """A concept and the held-out tokens it occurs on."""

    name: str
    """`kind:text`, e.g. `keyword:def`, `token:' np'`."""
    kind: str
    rows_K: np.ndarray
    """Sorted indices (into the measured tokens, 0-based) of its occurrences, int64."""

    @property
    def count(self) -> int:
        return len(self.rows_K)


@dataclass
class HeldText:
    """The measured tokens: ids, documents, positions, and each token's decoded text."""

    tokens_N: np.ndarray
    doc_ids_N: np.ndarray
    positions_N: np.ndarray
    pieces: list[str]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens_N)


def read_held_text(holdout: Holdout, decode: Callable[[int], str],
                   batch_rows: int = 8192) -> HeldText:
    """The held-out rows' token ids, documents, positions and decoded texts."""
    parts = [(b.tokens_N.numpy(), b.doc_ids_N.numpy(), b.positions_N.numpy())
             for b in holdout.store.iter_rows(batch_rows, rows=holdout.rows)]
    tokens_N, doc_ids_N, positions_N = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return HeldText(tokens_N, doc_ids_N, positions_N, decode_pieces(tokens_N, decode))


def decode_pieces(tokens_N: np.ndarray, decode: Callable[[int], str]) -> list[str]:
    """Each token's text (`decode` called once per distinct id)."""
    table = {int(t): decode(int(t)) for t in np.unique(tokens_N)}
    return [table[int(t)] for t in tokens_N]


def segments(text: HeldText) -> list[tuple[int, int]]:
    """[start, stop) token ranges of consecutive text tokens (position ≥ 1) of one document."""
    out: list[tuple[int, int]] = []
    start = None
    for i in range(text.n_tokens):
        is_text = text.doc_ids_N[i] >= 0 and text.positions_N[i] >= 1
        continues = (start is not None and is_text and text.doc_ids_N[i] == text.doc_ids_N[i - 1]
                     and text.positions_N[i] == text.positions_N[i - 1] + 1)
        if start is not None and not continues:
            out.append((start, i))
            start = None
        if is_text and start is None:
            start = i
    if start is not None:
        out.append((start, text.n_tokens))
    return out


@dataclass
class _Found:
    """Word occurrences: word -> [(first token, last token)], and the imported names."""

    spans: dict[str, list[tuple[int, int]]]
    libraries: set[str]


def find_words(text: HeldText) -> _Found:
    """Every whole-word occurrence with its first and last token, and the imported modules."""
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    libraries: set[str] = set()
    for lo, hi in segments(text):
        starts = np.cumsum([0] + [len(p) for p in text.pieces[lo:hi]]).tolist()
        joined = "".join(text.pieces[lo:hi])
        for m in WORD.finditer(joined):
            first = lo + bisect_right(starts, m.start()) - 1
            last = lo + bisect_right(starts, m.end() - 1) - 1
            spans[m.group()].append((first, last))
        libraries |= imported_modules(joined)
    return _Found(dict(spans), libraries)


def imported_modules(source: str) -> set[str]:
    """Top-level modules imported by `import X, Y.z as w` and `from X import ...` lines."""
    names = set(FROM_IMPORT.findall(source))
    for clause in IMPORT.findall(source):
        for item in clause.split(","):
            m = WORD.match(item.strip())
            if m:
                names.add(m.group())
    return names


def build_concepts(text: HeldText, opts: ConceptOptions) -> tuple[list[Concept], int]:
    """The concepts (module docstring) and how many were dropped as duplicates of an earlier
    one."""
    check_options(opts)
    found = find_words(text)
    candidates = list(_class_concepts(found)) + list(_library_concepts(found))
    candidates += _word_concepts(found) + _token_concepts(text)
    kept, seen, duplicates = [], set(), 0
    for c in candidates:
        if c.count < opts.min_count:
            continue
        key = c.rows_K.tobytes()
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        kept.append(c)
    return spread(kept, opts.max_concepts), duplicates


def check_options(opts: ConceptOptions) -> None:
    if opts.min_count < 1:
        raise UserError(f"--min-count must be at least 1, not {opts.min_count}")
    if opts.max_concepts < 1:
        raise UserError(f"--max-concepts must be at least 1, not {opts.max_concepts}")


def spread(concepts: list[Concept], n_max: int) -> list[Concept]:
    """All of them, or `n_max` evenly spaced in the ranking by count (listing order kept)."""
    if len(concepts) <= n_max:
        return concepts
    ranked = sorted(range(len(concepts)), key=lambda i: (concepts[i].count, i))
    picks = np.unique(np.linspace(0, len(ranked) - 1, n_max).round().astype(int))
    keep = sorted(ranked[i] for i in picks)
    return [concepts[i] for i in keep]


def _rows(values: list[int] | set[int]) -> np.ndarray:
    return np.unique(np.asarray(list(values), dtype=np.int64))


def _last_tokens(spans: list[tuple[int, int]]) -> list[int]:
    return [last for _, last in spans]


def _all_tokens(spans: list[tuple[int, int]]) -> list[int]:
    return [i for first, last in spans for i in range(first, last + 1)]


def _class_concepts(found: _Found) -> list[Concept]:
    keywords = [i for w, s in found.spans.items() if keyword.iskeyword(w)
                for i in _last_tokens(s)]
    capitals = [i for w, s in found.spans.items() if w[0].isupper() for i in _last_tokens(s)]
    libraries = [i for w in found.libraries for i in _all_tokens(found.spans.get(w, []))]
    return [Concept("class:keyword", "class", _rows(keywords)),
            Concept("class:capitalised", "class", _rows(capitals)),
            Concept("class:library", "class", _rows(libraries))]


def _library_concepts(found: _Found) -> list[Concept]:
    return [Concept(f"library:{w}", "library", _rows(_all_tokens(found.spans.get(w, []))))
            for w in sorted(found.libraries)]


def word_kind(word: str) -> str:
    """keyword, capitalised or word."""
    if keyword.iskeyword(word):
        return "keyword"
    return "capitalised" if word[0].isupper() else "word"


def _word_concepts(found: _Found) -> list[Concept]:
    out = []
    for kind in ("keyword", "capitalised", "word"):
        out += [Concept(f"{kind}:{w}", kind, _rows(_last_tokens(s)))
                for w, s in sorted(found.spans.items()) if word_kind(w) == kind]
    return out


def _token_concepts(text: HeldText) -> list[Concept]:
    is_text = (text.doc_ids_N >= 0) & (text.positions_N >= 1)
    rows = np.flatnonzero(is_text)
    order = np.argsort(text.tokens_N[rows], kind="stable")
    ids = text.tokens_N[rows][order]
    bounds = np.flatnonzero(np.diff(ids)) + 1
    out = []
    for group in np.split(rows[order], bounds) if len(rows) else []:
        first = int(group[0])
        name = f"token:{text.pieces[first]!r}#{int(text.tokens_N[first])}"
        out.append(Concept(name, "token", np.sort(group)))
    return out
