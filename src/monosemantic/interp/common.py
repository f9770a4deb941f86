"""What `explain` and `score` share: choosing features, opening the LLM client, running
features in parallel."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from monosemantic.errors import UserError
from monosemantic.featuredb.reader import FeatureCard, FeatureDB
from monosemantic.interp.backends import LLMOptions, make_backend
from monosemantic.interp.cache import CallCache, LLMClient
from monosemantic.progress import progress
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

T = TypeVar("T")
R = TypeVar("R")


def select_features(db: FeatureDB, features: Iterable[int], all_: bool, sample: int,
                    seed: int) -> list[int]:
    """Exactly one of: explicit ids, every live feature, or `sample` random live features."""
    features = list(features)
    if sum([bool(features), all_, sample > 0]) != 1:
        raise UserError("choose the features with exactly one of --features ID..., --all or "
                        "--sample N")
    if features:
        for f in features:
            if not 0 <= f < db.n_features:
                raise UserError(f"feature {f} is not in {db.path} (ids 0 to "
                                f"{db.n_features - 1})")
        return features
    alive = [s["id"] for s in db.stats() if s["count"] > 0]
    if all_:
        return alive
    return sorted(random.Random(seed).sample(alive, min(sample, len(alive))))


def open_client(opts: LLMOptions, db: Path, lm: LoadedModel | None = None) -> LLMClient:
    """The configured backend behind the call cache (default: beside the feature database)."""
    backend = make_backend(opts, lm=lm)
    cache = None
    if opts.cache != "off":
        cache = CallCache(Path(opts.cache) if opts.cache else
                          Path(db).parent / RunDir.LLM_CACHE)
    return LLMClient(backend, cache, concurrency=opts.concurrency)


class CardReader:
    """Feature cards read from one FeatureDB by several threads, one at a time."""

    def __init__(self, db: FeatureDB):
        self.db = db
        self._lock = threading.Lock()

    def __call__(self, feature: int) -> FeatureCard:
        with self._lock:
            return self.db.feature(feature)


def run_parallel(fn: Callable[[T], R], items: list[T], workers: int, desc: str) -> list[R]:
    """`fn` over `items` with `workers` threads and a progress bar; results in item order."""
    with progress(total=len(items), desc=desc, unit="feat") as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(fn, item) for item in items]
        out = []
        for fut in futures:
            out.append(fut.result())
            bar.update(1)
    return out
