"""Sharded state on disk with torch.distributed.checkpoint (DCP), readable at any world size.

The caller names, for its local state, the tensors that run over the F features and along
which dim (`sharded`), and the features [lo, hi) this rank holds (`FeatureSlice`); every other
tensor is replicated: the same on every rank, written once, by the lowest rank (so an entry that
only rank 0 holds truly, such as folded metric sums, is saved right). The checkpoint records each
tensor's global shape and the chunk every rank wrote, so loading with other slices, at any
world size, reads exactly the requested slice (DCP's resharding; custom planners map a plain
local tensor to its chunk, which also allows the uneven `r·F//N` split that DTensor's `Shard`
placement does not). Objects (non-tensors) are pickled, one per key: keys that differ per rank
must carry the rank in their name.

With a process group every rank calls `save_state` / `load_state` together; without one the
single process does all (DCP's `no_dist`), in the same format.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.default_planner import (
    DefaultLoadPlanner,
    DefaultSavePlanner,
    create_default_local_load_plan,
)
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadPlan,
    SavePlan,
    TensorWriteData,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save


@dataclass(frozen=True)
class FeatureSlice:
    """The features [lo, hi) of `n_features` that this rank holds."""

    lo: int
    hi: int
    n_features: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi <= self.n_features:
            raise ValueError(f"feature slice [{self.lo}, {self.hi}) of {self.n_features}")

    @classmethod
    def whole(cls, n_features: int) -> FeatureSlice:
        """All features (a replicated SAE)."""
        return cls(0, n_features, n_features)

    @classmethod
    def of_rank(cls, rank: int, world: int, n_features: int) -> FeatureSlice:
        """Rank `rank`'s contiguous share of `world` ranks: [rank·F//world, (rank+1)·F//world)."""
        return cls(rank * n_features // world, (rank + 1) * n_features // world, n_features)

    @property
    def size(self) -> int:
        return self.hi - self.lo


def _no_dist() -> bool:
    return not (dist.is_available() and dist.is_initialized())


def save_state(folder: Path, tensors: Mapping[str, torch.Tensor], objects: Mapping[str, Any],
               sharded: Mapping[str, int], part: FeatureSlice | None) -> None:
    """Write this rank's `tensors` (CPU) and `objects` into `folder` (all ranks call it).

    `sharded`: tensor name -> the dim along which it holds `part` of the features (`part` may
    be None when nothing is sharded)."""
    overlap = set(tensors) & set(objects)
    if overlap:
        raise ValueError(f"names used for both a tensor and an object: {sorted(overlap)}")
    state: dict[str, Any] = {**tensors, **objects}
    planner = _SliceSavePlanner(_slices(tensors, sharded, part))
    with warnings.catch_warnings():
        # The single-process case is intended; DCP warns about it on every call.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp_save(state, checkpoint_id=str(folder), planner=planner, no_dist=_no_dist())


def load_state(folder: Path, tensors: Mapping[str, torch.Tensor], object_keys: list[str],
               sharded: Mapping[str, int], part: FeatureSlice | None) -> dict[str, Any]:
    """Fill `tensors` (CPU, this rank's local shapes) in place from `folder` and return the
    objects named in `object_keys` (all ranks call it with the same names). `part` may be None
    when nothing is `sharded` (every tensor read whole)."""
    state: dict[str, Any] = {**tensors, **{k: None for k in object_keys}}
    planner = _SliceLoadPlanner(_slices(tensors, sharded, part))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp_load(state, checkpoint_id=str(folder), planner=planner, no_dist=_no_dist())
    return {k: state[k] for k in object_keys}


def saved_entries(folder: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype] | None]:
    """Each entry of the checkpoint in `folder`: a tensor's (global shape, dtype), None for an
    object."""
    md: Metadata = FileSystemReader(str(folder)).read_metadata()
    return {k: None if isinstance(v, BytesStorageMetadata)
            else (tuple(v.size), v.properties.dtype)
            for k, v in md.state_dict_metadata.items()}


def _slices(tensors: Mapping[str, torch.Tensor], sharded: Mapping[str, int],
            part: FeatureSlice | None) -> dict[str, tuple[int, FeatureSlice]]:
    """{name: (dim, part)} of the sharded tensors, checked here rather than in the planners,
    whose errors DCP wraps in a CheckpointException."""
    if not sharded:
        return {}
    if part is None:
        raise ValueError("sharded tensors need the feature slice they hold")
    out = {k: (d, part) for k, d in sharded.items() if k in tensors}
    for name, (dim, _) in out.items():
        _chunk(tensors[name], dim, part)
    return out


def _chunk(tensor: torch.Tensor, dim: int, part: FeatureSlice) -> tuple[torch.Size, torch.Size]:
    """(offsets, global size) of the local `tensor` holding `part` along `dim`."""
    if tensor.shape[dim] != part.size:
        raise ValueError(f"a tensor of shape {tuple(tensor.shape)} does not hold the "
                         f"{part.size} features [{part.lo}, {part.hi}) along dim {dim}")
    offsets = [0] * tensor.dim()
    offsets[dim] = part.lo
    size = list(tensor.shape)
    size[dim] = part.n_features
    return torch.Size(offsets), torch.Size(size)


class _SliceSavePlanner(DefaultSavePlanner):
    """Writes each sharded tensor as its chunk of the global tensor; replicated entries come
    from the lowest rank."""

    def __init__(self, sharded: dict[str, tuple[int, FeatureSlice]]):
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False,
                         dedup_save_to_lowest_rank=True)
        self.sharded = sharded

    def create_local_plan(self) -> SavePlan:
        plan = super().create_local_plan()
        items = [self._shard_item(item.index.fqn) if item.index.fqn in self.sharded else item
                 for item in plan.items]
        self.plan = dataclasses.replace(plan, items=items)
        return self.plan

    def _shard_item(self, fqn: str) -> WriteItem:
        tensor = self.state_dict[fqn]
        offsets, size = _chunk(tensor, *self.sharded[fqn])
        return WriteItem(
            index=MetadataIndex(fqn, offsets), type=WriteItemType.SHARD,
            tensor_data=TensorWriteData(
                chunk=ChunkStorageMetadata(offsets=offsets, sizes=tensor.size()),
                properties=TensorProperties.create_from_tensor(tensor), size=size))

    def lookup_object(self, index: MetadataIndex) -> Any:
        # A sharded entry's chunk is the whole local tensor.
        return self.state_dict[index.fqn]


class _SliceLoadPlanner(DefaultLoadPlanner):
    """Reads into each sharded tensor the chunk of the global tensor it holds, from whichever
    saved chunks overlap it."""

    def __init__(self, sharded: dict[str, tuple[int, FeatureSlice]]):
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self.sharded = sharded

    def create_local_plan(self) -> LoadPlan:
        assert self.metadata is not None
        saved = self.metadata.state_dict_metadata
        missing = sorted(k for k in self.state_dict if k not in saved)
        if missing:
            raise ValueError(f"the checkpoint has no entries {missing}")
        plain = {k: v for k, v in self.state_dict.items() if k not in self.sharded}
        requests = list(create_default_local_load_plan(plain, self.metadata).items)
        for fqn, (dim, part) in self.sharded.items():
            tensor, md = self.state_dict[fqn], saved[fqn]
            offsets, size = _chunk(tensor, dim, part)
            if not isinstance(md, TensorStorageMetadata) or md.size != size:
                shape = getattr(md, "size", "an object")
                raise ValueError(f"checkpoint entry {fqn} is {shape}, expected a tensor of "
                                 f"shape {tuple(size)}")
            local = ChunkStorageMetadata(offsets=offsets, sizes=tensor.size())
            requests += create_read_items_for_chunk_list(fqn, md, [local])
        return LoadPlan(requests)

    def lookup_tensor(self, index: MetadataIndex) -> torch.Tensor:
        # The read items address a sharded tensor by its global offsets; it is the local one.
        return self.state_dict[index.fqn]
