"""`python -m monosemantic ...` (and `torchrun -m monosemantic ...`): the command line."""

import sys

from monosemantic.cli import main

sys.exit(main())
