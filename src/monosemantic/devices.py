"""Device names from configs (`auto`, `cpu`, `cuda`, `cuda:1`, `mps`) resolved once, checked
once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from monosemantic.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; a CUDA device on a machine without one is
    an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(
            f"--device {name!r} is not a device name (try auto, cpu, cuda, cuda:1)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at `n`, then restore it (the count is
    per thread once set, so other threads keep theirs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
