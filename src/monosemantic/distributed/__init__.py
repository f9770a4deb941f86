"""Processes under torchrun: which rank this is (`Ranks`, `process_group`), collectives every
command shares (`agree`, `gather_all`, `gather_to_main`) and failed collectives explained
(`failures`). Training's own pieces (metric sums, feature shards, the grid) live in `train/`."""

from monosemantic.distributed.collective import RankStopped, agree, gather_all, gather_to_main
from monosemantic.distributed.failures import RankFailureError, explained_failures
from monosemantic.distributed.ranks import Ranks, process_group

__all__ = ["RankFailureError", "RankStopped", "Ranks", "agree", "explained_failures",
           "gather_all", "gather_to_main", "process_group"]
