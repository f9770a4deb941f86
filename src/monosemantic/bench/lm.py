"""The language models and tokenizers of `bench RUN ...`, loaded once per model spec and shared
by every run that reads the same model.

Token text needs only the tokenizer (`models.load_tokenizer`, no weights read); the metrics
that run the model (absorption, features vs neurons) load it on first use, on --device, in the
dtype the store was harvested in (so the replayed rows are the stored ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monosemantic.errors import UserError
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    import torch

    from monosemantic.models import LoadedModel


class LanguageModels:
    """Model spec -> tokenizer and loaded model, each loaded when first asked for.

    `override`: the spec every run reads instead of its recorded one (--model); `lm`: a model
    already loaded, used for every run (its spec and device as they are)."""

    def __init__(self, override: str | None, device: str, lm: LoadedModel | None = None):
        self.override = override
        self.device = device
        self.lm = lm
        self._tokenizers: dict[str, Any] = {}
        self._models: dict[tuple[str, str], LoadedModel] = {}

    def spec(self, run: RunDir) -> str:
        """The model spec `run` is benchmarked with."""
        if self.lm is not None:
            return self.lm.spec
        return self.override or run.model

    def decoder(self, run: RunDir) -> Callable[[int], str]:
        """Token id -> text with `run`'s tokenizer (loaded on the first call)."""

        def decode(token: int) -> str:
            return self.tokenizer(run).decode([token])

        return decode

    def tokenizer(self, run: RunDir) -> Any:
        spec = self.spec(run)
        if self.lm is not None:
            return self.lm.tokenizer
        loaded = [lm for (s, _), lm in self._models.items() if s == spec]
        if loaded:
            return loaded[0].tokenizer
        if spec not in self._tokenizers:
            from monosemantic.models import load_tokenizer

            self._tokenizers[spec] = load_tokenizer(spec)
        return self._tokenizers[spec]

    def model(self, run: RunDir, dtype: torch.dtype) -> LoadedModel:
        """`run`'s language model in `dtype`, checked to have the run's hook at its width."""
        if self.lm is not None:
            check_width(self.lm, run)
            return self.lm
        key = (self.spec(run), str(dtype))
        if key not in self._models:
            # run.load_model checks the hook and width of the first run loading this spec.
            self._models[key] = run.load_model(self.device, dtype=dtype, spec=key[0])
        lm = self._models[key]
        check_width(lm, run)
        return lm

    def loader(self, run: RunDir, dtype: torch.dtype) -> Callable[[], LoadedModel]:
        """A function that returns `self.model(run, dtype)` (nothing loads until called)."""
        return lambda: self.model(run, dtype)


def check_width(lm: LoadedModel, run: RunDir) -> None:
    """UserError unless `lm` has `run.hook` at the width the run's SAE reads."""
    width = lm.hook_point(run.hook).width  # an unknown hook: UserError listing valid ones
    if width != run.d_in:
        raise UserError(f"{lm.spec} has width {width} at {run.hook}; the SAE of {run.path} "
                        f"reads width {run.d_in}: give the model it was trained on with --model")
