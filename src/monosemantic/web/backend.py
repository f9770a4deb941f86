"""The model side of the browser: prompt inspection and steering, loaded lazily once.

`ModelBackend` methods are blocking and are only called from the `JobQueue` worker thread, so
the model sees one job at a time. Pages and the feature API never reach this module.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from monosemantic.errors import UserError
from monosemantic.runs import RunDir, RunModel

if TYPE_CHECKING:  # steer is imported when a job first needs it
    from monosemantic.steer.edits import Unit
    from monosemantic.steer.steering import Mode


class ModelUnavailable(RuntimeError):
    """The run's model or SAE could not be loaded (the API answers 503 with the reason)."""


class ModelBackend:
    """LM + SAE of a run, loaded on first use (`RunDir.load`)."""

    def __init__(self, run: RunDir, max_act_F: np.ndarray, device: str = "auto",
                 model: str | None = None):
        self.run = run
        self.device = device
        self.model = model
        self.max_act_F = torch.from_numpy(np.asarray(max_act_F, dtype=np.float32))
        self._loaded: RunModel | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> RunModel:
        with self._lock:
            if self._loaded is None:
                try:
                    self._loaded = self.run.load(self.device, self.model)
                except (OSError, ValueError, RuntimeError, ImportError, UserError) as err:
                    # Not cached: a later request tries again (e.g. after the model is fixed).
                    raise ModelUnavailable(f"could not load the model of {self.run.path}: {err} "
                                           "(pages and the feature API still work)") from err
            return self._loaded

    def inspect(self, text: str, top: int, feature: int | None = None) -> dict[str, Any]:
        """Per token its `top` strongest features, and the prompt's features ranked by their
        largest activation on it; with `feature`, also that feature's activation per token."""
        from monosemantic.analysis.inspect import text_features

        lm, sae, hook = self.load()
        tf = text_features(lm, sae, hook, text)
        f_SF = tf.f_SF.float()
        max_F = self.max_act_F
        tokens = []
        for tok, f_F in zip(tf.tokens, f_SF):
            n = min(top, int((f_F > 0).sum()))
            best = f_F.topk(n) if n else None
            feats = [] if best is None else [
                {"feature": i, "activation": v, "relative": _rel(v, float(max_F[i]))}
                for v, i in zip(best.values.tolist(), best.indices.tolist())]
            tokens.append({"token": tok, "features": feats})
        summary = []
        if f_SF.shape[0]:
            peak_F, where_F = f_SF.max(0)
            n_active_F = (f_SF > 0).sum(0)
            k = min(top * 4, int((peak_F > 0).sum()))
            if k:
                best = peak_F.topk(k)
                summary = [{"feature": i, "activation": v, "relative": _rel(v, float(max_F[i])),
                            "token_index": int(where_F[i]), "n_tokens": int(n_active_F[i])}
                           for v, i in zip(best.values.tolist(), best.indices.tolist())]
        out: dict[str, Any] = {"tokens": tokens, "features": summary}
        if feature is not None:
            out["feature_acts"] = f_SF[:, feature].tolist()
        return out

    def filter(self, positive: list[str], negative: list[str], *, threshold: float,
               relative: bool, top: int) -> list[dict[str, Any]]:
        """Features active on every positive prompt and on no negative one
        (`monosemantic.analysis.search.filter_features`)."""
        from dataclasses import asdict

        from monosemantic.analysis.search import filter_features

        lm, sae, hook = self.load()
        hits = filter_features(lm, sae, hook, positive, negative, threshold=threshold,
                               relative_to_max=self.max_act_F if relative else None, top=top)
        return [asdict(h) for h in hits]

    def steer(self, prompt: str, edits: list[tuple[int, float, Unit]], *, mode: Mode,
              max_new_tokens: int, temperature: float, top_p: float, seed: int,
              max_multiplier: float, include_special: bool = False) -> dict[str, Any]:
        """Unsteered vs steered continuations and side effects (`monosemantic.steer`)."""
        from monosemantic.steer import FeatureEdit, steer_compare

        lm, sae, hook = self.load()
        result = steer_compare(
            lm, sae, hook, prompt, [FeatureEdit(f, v, u) for f, v, u in edits], mode=mode,
            max_act_F=self.max_act_F, max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=top_p, seed=seed, include_special=include_special,
            max_multiplier=max_multiplier, hook_out=self.run.hook_out)
        return result.to_dict()


def _rel(value: float, max_act: float) -> float | None:
    return value / max_act if max_act > 0 else None
