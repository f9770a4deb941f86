"""Words for first-letter tasks: frequent English words that are one token with a leading space,
and the prompts that end in them.

The word list comes from `wordfreq` (offline; its English frequency list), in frequency order,
keeping lower-case ASCII alphabetic words whose `" " + word` the tokenizer encodes as one token,
as SAEBench's first-letter tasks do. Each prompt is the tokenized prefix (special tokens such as
BOS included) followed by the word's token, so the word's token is the prompt's last token and
every prompt has the same length: no padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from monosemantic.errors import UserError

WORDFREQ_SCAN = 100_000
"""How many of wordfreq's most frequent English words are scanned for single-token words."""
_ENCODE_CHUNK = 4096


@dataclass(frozen=True)
class Word:
    """One word of a first-letter task and its token."""

    text: str
    """The word, lower case (the prompt holds `" " + text`)."""
    token: int
    """The tokenizer's id of `" " + text`."""

    @property
    def letter(self) -> str:
        return self.text[0]


def frequent_words(n_scan: int = WORDFREQ_SCAN) -> list[str]:
    """wordfreq's `n_scan` most frequent English words that are lower-case ASCII letters only."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        raise UserError("the first-letter tasks need the `wordfreq` package: "
                        "pip install wordfreq") from None
    return [w for w in top_n_list("en", n_scan) if w.isascii() and w.isalpha() and w.islower()]


def single_token_words(tokenizer: Any, candidates: list[str], n_words: int) -> list[Word]:
    """The first `n_words` of `candidates` (in order) whose `" " + word` is exactly one token
    (other than the unknown token). UserError when none is."""
    unk = tokenizer.unk_token_id  # an unknown word is one token too, but not a word's own
    out: list[Word] = []
    for lo in range(0, len(candidates), _ENCODE_CHUNK):
        chunk = candidates[lo:lo + _ENCODE_CHUNK]
        ids = tokenizer([" " + w for w in chunk], add_special_tokens=False)["input_ids"]
        out.extend(Word(w, int(t[0])) for w, t in zip(chunk, ids) if len(t) == 1 and t[0] != unk)
        if len(out) >= n_words:
            return out[:n_words]
    if not out:
        raise UserError(f"none of the {len(candidates):,} candidate words is a single token "
                        "(with a leading space) in this model's tokenizer: first-letter tasks "
                        "need a tokenizer with whole-word tokens")
    return out


def word_prompts(tokenizer: Any, prefix: str, words: list[Word]) -> torch.Tensor:
    """Token ids [W, S]: the tokenized `prefix` (with the tokenizer's special tokens), then the
    word's token."""
    prefix_ids = list(tokenizer(prefix)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and prefix_ids and prefix_ids[-1] == eos:
        prefix_ids = prefix_ids[:-1]  # tokenizers that close every text with EOS
    if not prefix_ids:
        raise UserError("the prompt prefix is empty and the tokenizer adds no BOS token: give a "
                        "prefix so the word is not the first token")
    prefix_S = torch.tensor(prefix_ids, dtype=torch.long)
    words_W = torch.tensor([w.token for w in words], dtype=torch.long)
    return torch.cat([prefix_S.expand(len(words), -1), words_W[:, None]], dim=1)
