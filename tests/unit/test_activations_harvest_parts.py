"""Harvest pieces that need no model: which positions are kept, CLI options, store layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monosemantic.activations.harvest import HarvestConfig, store_dirs
from monosemantic.activations.model_rows import keep_mask
from monosemantic.cli import build_parser
from monosemantic.config import dataclass_from_namespace
from monosemantic.data import ContextBatch
from monosemantic.errors import UserError

BOS, PAD, EOS = 1, 0, 2


def _batch() -> ContextBatch:
    # context 0: a document's BOS, 3 text tokens; context 1: inserted BOS (doc -1), one token
    # of the continuing document, its EOS-like special, then padding
    tokens = torch.tensor([[BOS, 10, 11, 12], [BOS, 13, EOS, PAD]])
    doc_ids = torch.tensor([[4, 4, 4, 4], [-1, 4, 4, -1]])
    positions = torch.tensor([[0, 1, 2, 3], [-1, 4, 5, -1]])
    return ContextBatch(tokens, doc_ids, positions)


def test_specials_and_padding_are_excluded_by_default():
    keep = keep_mask(_batch(), [PAD, BOS, EOS], exclude_special=True)
    assert keep.tolist() == [[False, True, True, True], [False, True, False, False]]


def test_padding_is_excluded_even_when_specials_are_kept():
    keep = keep_mask(_batch(), [PAD, BOS, EOS], exclude_special=False)
    assert keep.tolist() == [[True, True, True, True], [True, True, True, False]]


def _parse(*argv: str) -> HarvestConfig:
    ns = build_parser("harvest").parse_args(["harvest", *argv])
    return dataclass_from_namespace(HarvestConfig, ns)


def test_cli_options_of_the_issue_parse():
    cfg = _parse("--model", "gemma-3-270m", "--hook", "blocks.6.hook_resid_post",
                 "--tokens", "2M", "--out", "DIR", "--corpus.source", "/data/x.jsonl",
                 "--dtype", "bfloat16")
    assert cfg.hooks == ("blocks.6.hook_resid_post",) and cfg.tokens == 2_000_000
    assert cfg.out == Path("DIR") and cfg.corpus.source == "/data/x.jsonl"
    assert (cfg.dtype, cfg.ctx_len, cfg.exclude_special) == ("bfloat16", 256, True)
    two = _parse("--hooks", "blocks.1.hook_resid_post", "blocks.2.hook_mlp_out", "--out", "D")
    assert two.hooks == ("blocks.1.hook_resid_post", "blocks.2.hook_mlp_out")


def test_one_store_per_hook_when_several():
    one = HarvestConfig(out=Path("o"), hooks=("blocks.1.hook_resid_post",))
    assert store_dirs(one) == {"blocks.1.hook_resid_post": Path("o")}
    two = HarvestConfig(out=Path("o"), hooks=("blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"))
    assert store_dirs(two) == {"blocks.1.hook_resid_post": Path("o/blocks.1.hook_resid_post"),
                               "blocks.2.hook_mlp_out": Path("o/blocks.2.hook_mlp_out")}
    with pytest.raises(UserError, match="repeat"):
        store_dirs(HarvestConfig(out=Path("o"), hooks=("a", "a")))
