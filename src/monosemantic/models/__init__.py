"""Models: loading (default / hub id / local dir / .gguf), hook points, the hook mechanism."""

from monosemantic.models.hook_points import HookPoint
from monosemantic.models.hooks import (
    ActivationGrads,
    activation_gradients,
    capture,
    edit,
    read_then_write,
)
from monosemantic.models.loading import (
    DEFAULT_MODEL,
    LoadedModel,
    load_model,
    load_model_layout,
    load_tokenizer,
)

__all__ = [
    "DEFAULT_MODEL",
    "ActivationGrads",
    "HookPoint",
    "LoadedModel",
    "activation_gradients",
    "capture",
    "edit",
    "read_then_write",
    "load_model",
    "load_model_layout",
    "load_tokenizer",
]
