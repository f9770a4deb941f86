"""Run under torchrun: `agree` on a step that fails on one rank only (argv: that rank, the path
it cannot read); exits as the command line does on a UserError (message on stderr, code 2)."""

import sys
from pathlib import Path

import torch

from monosemantic.distributed import process_group
from monosemantic.distributed.collective import agree
from monosemantic.errors import UserError


def main() -> int:
    failing, path = int(sys.argv[1]), Path(sys.argv[2])
    try:
        with process_group(torch.device("cpu")) as (ranks, _device):
            def step() -> int:
                if ranks.rank == failing:
                    path.read_bytes()  # an OSError here (the path is missing)
                return ranks.rank

            agree(ranks, step)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
