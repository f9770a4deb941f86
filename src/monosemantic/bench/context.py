"""`BenchContext`: everything a per-run metric reads (the contract of bench/metrics.py).

The held-out rows are read once per run (`HeldOutSample`); the SAE's codes and
reconstructions of them are computed on first use and shared by every metric, and so is the
language model (`ctx.lm`, loaded once per model spec for the whole benchmark).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.progress import progress
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.bench.options import RealBenchOptions
    from monosemantic.bench.tasks import TokenLabels
    from monosemantic.models import LoadedModel
    from monosemantic.sae import SAE


@dataclass
class HeldOutSample:
    """Consecutive held-out store rows of one run, in corpus order."""

    rows: range
    """The store rows read (global indices)."""
    acts_ND: Tensor
    """Raw activations (float32; not multiplied by the store's norm_scale, as saved SAEs read
    them)."""
    tokens_N: Tensor
    doc_ids_N: Tensor
    positions_N: Tensor


def read_sample(store: ActivationStore, holdout: range, n_tokens: int,
                batch_rows: int) -> HeldOutSample:
    """The first `n_tokens` rows of `holdout` (all when fewer)."""
    rows = range(holdout.start, min(holdout.stop, holdout.start + n_tokens))
    if len(rows) == 0:
        raise UserError(f"the held-out range [{holdout.start}, {holdout.stop}) is empty: train "
                        "with --holdout-fraction > 0")
    parts = list(store.iter_rows(batch_rows, rows=rows))
    return HeldOutSample(rows, *(torch.cat([getattr(p, name) for p in parts])
                                 for name in ("acts_ND", "tokens_N", "doc_ids_N",
                                              "positions_N")))


@dataclass
class BenchContext:
    """One run being benchmarked: what a metric function gets (`METRICS[name](ctx)`)."""

    run: RunDir
    """The run (its `eval.json`, metadata, paths)."""
    sae: SAE
    """Its SAE (frozen, on the CPU unless --device says otherwise)."""
    sample: HeldOutSample
    """The held-out rows measured."""
    opts: RealBenchOptions
    """The benchmark's options."""
    decode_token: Callable[[int], str]
    """One token id to its text (the run's tokenizer)."""
    store: ActivationStore
    """The activation store the sample was read from."""
    load_lm: Callable[[], LoadedModel]
    """The run's language model, on the SAE's device in the store's harvest dtype; loaded on
    the first call, once per model spec for the whole benchmark (use `ctx.lm`)."""
    batch_rows: int = 2048
    """Rows per SAE forward."""
    cache: dict[str, Any] = field(default_factory=dict)
    """Room for metrics to share intermediate results (keyed by the metric's name)."""

    @property
    def device(self) -> torch.device:
        return self.sae.W_dec.device

    @cached_property
    def codes(self) -> tuple[Tensor, Tensor]:
        """(f_NF, x_hat_ND) of the sample, on the CPU (dense codes: N·F floats)."""
        f_parts, x_hat_parts = [], []
        n = self.sample.acts_ND.shape[0]
        bar = progress(total=n, desc=f"encode {self.run.name}", unit="tok")
        with torch.no_grad(), bar:
            for x_ND in self.sample.acts_ND.split(self.batch_rows):
                f_NF = self.sae.encode(x_ND.to(self.device))
                x_hat_parts.append(self.sae.decode(f_NF).float().cpu())
                f_parts.append(f_NF.float().cpu())
                bar.update(x_ND.shape[0])
        return torch.cat(f_parts), torch.cat(x_hat_parts)

    @property
    def lm(self) -> LoadedModel:
        """The run's language model (loaded on first use, shared by the runs of one model)."""
        return self.load_lm()

    @property
    def f_NF(self) -> Tensor:
        return self.codes[0]

    @property
    def x_hat_ND(self) -> Tensor:
        return self.codes[1]

    @cached_property
    def token_texts(self) -> list[str]:
        """The decoded text of every sampled token (one decode per distinct id)."""
        ids = self.sample.tokens_N.tolist()
        texts = {t: self.decode_token(t) for t in set(ids)}
        return [texts[t] for t in ids]

    @cached_property
    def labels(self) -> TokenLabels:
        """The probing tasks' token labels of the sample (bench/tasks.py)."""
        from monosemantic.bench.tasks import label_tokens

        return label_tokens(self.token_texts, self.sample.doc_ids_N.tolist(),
                            self.sample.positions_N.tolist())

    @cached_property
    def eval_report(self) -> dict[str, Any]:
        """The run's eval.json ({} when `monosemantic eval` has not been run)."""
        path = self.run.eval_path
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise UserError(f"{path} is not valid JSON ({err}): run `monosemantic eval "
                            f"{self.run.path}` again") from err
        return data if isinstance(data, dict) else {}
