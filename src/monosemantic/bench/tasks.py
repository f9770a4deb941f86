"""The sparse-probing tasks: binary token labels read off the decoded tokens and their document.

A document's text is rebuilt from its sampled tokens in position order; only tokens whose
whole document prefix (positions 1..p) is in the sample are labelled (the lexical state of a
token depends on everything before it), and tokens that are only whitespace are left out of
every task. A Python-aware scanner gives each character a state: code, `#` comment, string
literal (one-line quotes) or triple-quoted string (taken as a docstring: prose). A token's
state is that of its first non-whitespace character.

| task | positive | negative |
|---|---|---|
| prose | comment or triple-quoted string | code |
| comment | `#` comment | triple-quoted string |
| string | one-line string literal (quotes included) | code |
| keyword | code token that is a Python keyword | other code token that is an identifier |
| capitalised | `Aaaa...` word (any state) | other alphabetic token |
| line_start | first non-whitespace token of its line | any other token |

Labels are -1 (not in the task), 0 or 1; the stripped token text is the token without the
whitespace around it.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass

import torch
from torch import Tensor

from monosemantic.bench.options import PROBE_TASK_NAMES

CODE, COMMENT, STRING, DOCSTRING = 0, 1, 2, 3


@dataclass
class TokenLabels:
    """The labels of every task over the sample's tokens."""

    by_task: dict[str, Tensor]
    """Task -> int8 [N]: 1 positive, 0 negative, -1 not part of the task."""
    n_labelled: int
    """Tokens whose document prefix was complete (the others are -1 in every task)."""

    def counts(self, task: str) -> tuple[int, int]:
        """(negatives, positives) of `task`."""
        y_N = self.by_task[task]
        return int((y_N == 0).sum()), int((y_N == 1).sum())


def char_states(text: str) -> bytes:
    """The lexical state (CODE, COMMENT, STRING, DOCSTRING) of every character of `text`."""
    out = bytearray(len(text))
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = bytes([COMMENT]) * (end - i)
            i = end
        elif c in "'\"":
            triple = text.startswith(c * 3, i)
            end = _string_end(text, i, c * 3 if triple else c)
            out[i:end] = bytes([DOCSTRING if triple else STRING]) * (end - i)
            i = end
        else:
            i += 1
    return bytes(out)


def _string_end(text: str, start: int, quote: str) -> int:
    """Index after the literal opening at `start` (an unclosed one-line literal ends at its
    line's end, an unclosed triple-quoted one at the text's end)."""
    k = start + len(quote)
    while k < len(text):
        if text[k] == "\\":
            k += 2
        elif text.startswith(quote, k):
            return k + len(quote)
        elif text[k] == "\n" and len(quote) == 1:
            return k
        else:
            k += 1
    return len(text)


def complete_documents(doc_ids: list[int], positions: list[int]) -> dict[int, list[int]]:
    """Per document, the sample indices of its tokens at positions 1, 2, ..., p (the longest
    run of consecutive positions from 1 found in the sample)."""
    by_doc: dict[int, dict[int, int]] = {}
    for i, (doc, pos) in enumerate(zip(doc_ids, positions)):
        if doc >= 0 and pos >= 1:
            by_doc.setdefault(doc, {})[pos] = i
    out: dict[int, list[int]] = {}
    for doc, at in by_doc.items():
        prefix, pos = [], 1
        while pos in at:
            prefix.append(at[pos])
            pos += 1
        if prefix:
            out[doc] = prefix
    return out


def label_tokens(texts: list[str], doc_ids: list[int], positions: list[int]) -> TokenLabels:
    """Every task's labels for tokens `texts` (decoded, one per sample row)."""
    labels = {task: torch.full((len(texts),), -1, dtype=torch.int8) for task in PROBE_TASK_NAMES}
    n_labelled = 0
    for indices in complete_documents(doc_ids, positions).values():
        pieces = [texts[i] for i in indices]
        text = "".join(pieces)
        states = char_states(text)
        start = 0
        for i, piece in zip(indices, pieces):
            n_labelled += 1
            first = start + len(piece) - len(piece.lstrip())
            if piece.strip():
                line_start = not text[text.rfind("\n", 0, first) + 1:first].strip()
                for task, y in _token_labels(piece.strip(), states[first], line_start).items():
                    labels[task][i] = y
            start += len(piece)
    return TokenLabels(labels, n_labelled)


def _token_labels(word: str, state: int, line_start: bool) -> dict[str, int]:
    """The label of one non-blank token (stripped text `word`) in each task it belongs to."""
    out = {"line_start": int(line_start)}
    if state in (COMMENT, DOCSTRING, CODE):
        out["prose"] = int(state != CODE)
    if state in (COMMENT, DOCSTRING):
        out["comment"] = int(state == COMMENT)
    if state in (STRING, CODE):
        out["string"] = int(state == STRING)
    if state == CODE and word.isidentifier():
        out["keyword"] = int(keyword.iskeyword(word))
    if word.isalpha():
        out["capitalised"] = int(len(word) > 1 and word[0].isupper() and word[1:].islower())
    return out
