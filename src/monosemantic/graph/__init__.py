"""Attribution graphs (circuit tracing) with transcoders as the replacement model.

`monosemantic graph RUN [RUN ...] --prompt ...` (docs/circuits.md): the frozen local
replacement model (`frozen.py`), its nodes (`nodes.py`) and edges (`attribution.py`),
pruning (`prune.py`), scores (`scores.py`), the intervention check (`interventions.py`),
graph.json (`output.py`). The replacement's MLPs sit behind `replacement.Replacement`.
"""

from monosemantic.graph.replacement import Replacement, TranscoderSet

__all__ = ["Replacement", "TranscoderSet"]
