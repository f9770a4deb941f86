"""`monosemantic inspect RUN "text"`: per token, the features that fire, ranked by activation.

`text_features` is the Python API the prompt searches build on: the SAE codes of every token of a
text (BOS and other special tokens dropped, their norms dwarf the rest as in the harvest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from monosemantic.console import say
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel
    from monosemantic.sae import SAE


@dataclass
class TextFeatures:
    """SAE codes of one text's tokens (special tokens removed)."""

    token_ids: list[int]
    tokens: list[str]
    f_SF: Tensor


@dataclass
class InspectConfig:
    """Show, for each token of a text, the SAE features that fire on it, strongest first."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder)."""
    text: str = field(metadata={"positional": True})
    """The text to inspect (quote it)."""
    top: int = 5
    """Features listed per token."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model: str | None = None
    """Model spec to load instead of the one recorded with the SAE."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)


@torch.no_grad()
def text_features(lm: LoadedModel, sae: SAE, hook: str, text: str) -> TextFeatures:
    """Codes [S, F] of the text's tokens (BOS and other special tokens left out)."""
    from monosemantic.data.packing import bos_token_id
    from monosemantic.models import capture

    tokenizer = lm.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids_1S = torch.tensor([[bos_token_id(tokenizer), *ids]])
    acts_SD = capture(lm, ids_1S, [hook])[hook][0]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    keep = [i for i, t in enumerate(ids_1S[0].tolist()) if i > 0 and t not in special]
    f_SF = sae.encode(acts_SD[keep].to(sae.W_dec_FD.device).float()).cpu()
    kept_ids = [int(ids_1S[0, i]) for i in keep]
    return TextFeatures(kept_ids, [tokenizer.decode([t]) for t in kept_ids], f_SF)


def format_inspection(tf: TextFeatures, top: int, max_act_F: Tensor | None = None) -> str:
    """One line per token: the token, then `#feature activation` for its strongest features
    (with the share of the feature's maximum when the database is there)."""
    lines = []
    width = max((len(repr(t)) for t in tf.tokens), default=0)
    for tok, f_F in zip(tf.tokens, tf.f_SF):
        n = min(top, int((f_F > 0).sum()))
        best = f_F.topk(n) if n else None
        items = []
        if best is not None:
            for v, i in zip(best.values.tolist(), best.indices.tolist()):
                rel = (f" ({v / float(max_act_F[i]):.0%})" if max_act_F is not None
                       and float(max_act_F[i]) > 0 else "")
                items.append(f"#{i} {v:.3g}{rel}")
        lines.append(f"{tok!r:<{width}}  " + ("  ".join(items) if items else "-"))
    return "\n".join(lines)


def inspect_text(cfg: InspectConfig) -> TextFeatures:
    """Print the features of every token of `cfg.text` and return the codes."""
    from monosemantic.errors import UserError

    run = RunDir.open(cfg.run)
    lm, sae, hook = run.load(cfg.device, cfg.model)
    tf = text_features(lm, sae, hook, cfg.text)
    if not tf.tokens:
        raise UserError("the text has no tokens besides special ones: give some text")
    # Without a database the activations are shown without the share of the maximum.
    say(format_inspection(tf, cfg.top, run.max_act_F()))
    return tf
