"""Progress bars for long work; silenced with MONOSEMANTIC_QUIET=1 (tests, logs)."""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> tqdm:
    """A tqdm bar; disabled when MONOSEMANTIC_QUIET is set (or `disable=True` is passed)."""
    disable = kwargs.pop("disable", False) or os.environ.get(
        "MONOSEMANTIC_QUIET", "") not in ("", "0")
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                unit_scale=True, **kwargs)
