"""A small activation store harvested from random lines of a word list (tiny model, CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

from monosemantic.activations import ActivationStore
from monosemantic.activations.harvest import HarvestConfig, harvest
from monosemantic.data import CorpusConfig


def word_corpus(root: Path, words: list[str], n_lines: int = 200, words_per_line: int = 10,
                seed: int = 0) -> Path:
    """ROOT/corpus/text.txt: `n_lines` lines of words drawn uniformly (seeded)."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    lines = [" ".join(words[int(i)] for i in
                      torch.randint(0, len(words), (words_per_line,), generator=gen))
             for _ in range(n_lines)]
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    return corpus


def harvest_word_store(root: Path, model_dir: Path, hook: str, words: list[str],
                       tokens: int = 1500) -> ActivationStore:
    """Harvest `tokens` rows at `hook` over `word_corpus` into ROOT/store (one line per doc)."""
    corpus = word_corpus(root, words)
    harvest(HarvestConfig(out=root / "store", model=str(model_dir), hooks=(hook,),
                          tokens=tokens, corpus=CorpusConfig(source=str(corpus), txt_unit="line"),
                          ctx_len=32, batch_size=8, dtype="float32", shard_rows=512,
                          device="cpu"))
    return ActivationStore(root / "store")
