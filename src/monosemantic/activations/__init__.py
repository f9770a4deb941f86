"""Activations: harvest a model's activations into a sharded store, read it back (memory-mapped,
shuffled or in corpus order, prefetched), or stream them straight from the model.

`harvest` itself lives in `monosemantic.activations.harvest` (a package attribute of that name
would be shadowed by the submodule).
"""

import importlib
from typing import TYPE_CHECKING

from monosemantic.activations.manifest import StoreError
from monosemantic.activations.reader import ActivationStore, RowBatch
from monosemantic.activations.writer import StoreWriter

if TYPE_CHECKING:
    from monosemantic.activations.harvest import HarvestConfig
    from monosemantic.activations.stream import norm_scale_of, stream_activations

__all__ = [
    "ActivationStore",
    "HarvestConfig",
    "RowBatch",
    "StoreError",
    "StoreWriter",
    "norm_scale_of",
    "stream_activations",
]

# These import the model and data packages (transformers): load them only when asked, so
# reading a store stays light.
_LAZY = {"HarvestConfig": "harvest", "stream_activations": "stream", "norm_scale_of": "stream"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
