"""The `monosemantic` CLI as a torchrun script that misbehaves on one rank (robustness tests).

    python -m torch.distributed.run ... tests/helpers/rank_cli.py train RUN --store STORE ...

Environment (read only on the rank named by TEST_ODD_RANK, default 1):
- TEST_ODD_ARGS: options appended to that rank's command line (space-separated).
- TEST_STALL_AT_STEP: that rank sleeps for TEST_STALL_SECONDS (default 600) before this
  optimizer step, as a rank stuck on I/O would, while the others enter the step's collectives.
"""

from __future__ import annotations

import os
import sys
import time

from monosemantic.cli import main
from monosemantic.train.trainer import Loop


def _stall_before(step: int, seconds: float) -> None:
    original = Loop.step

    def step_or_stall(self: Loop, x_BD) -> None:
        if self.state.step == step:
            time.sleep(seconds)
        original(self, x_BD)

    Loop.step = step_or_stall  # type: ignore[method-assign]


if __name__ == "__main__":
    argv = sys.argv[1:]
    if os.environ.get("RANK") == os.environ.get("TEST_ODD_RANK", "1"):
        argv += os.environ.get("TEST_ODD_ARGS", "").split()
        if "TEST_STALL_AT_STEP" in os.environ:
            _stall_before(int(os.environ["TEST_STALL_AT_STEP"]),
                          float(os.environ.get("TEST_STALL_SECONDS", "600")))
    sys.exit(main(argv))
