"""The 2-D feature map: UMAP of the decoder directions (cosine metric), k-means clusters on the
map, and a short text label per cluster.

Clusters: k-means on the 2-D UMAP coordinates. UMAP (cosine on the decoder directions) already
groups features whose directions are close; clustering its output gives regions that are
contiguous on the map the user looks at (so a label can sit on its region), every feature gets a
cluster (HDBSCAN would leave many as noise), and it costs O(F·k) even at 1M features. k
defaults to round(sqrt(F) / 2), between 2 and 200 (32 clusters for 4,096 features).

Labels: each member contributes the set of its top-example peak tokens (top logit-effect
tokens for a feature that never fired); a cluster is labelled with the 3 tokens of highest
tf-idf (members carrying the token × log(clusters / clusters where it occurs)), so tokens
common to every cluster (newline, space) lose to what sets the cluster apart.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from monosemantic.console import say


def umap_xy(W_dec_FD: Tensor, seed: int = 0) -> Tensor | None:
    """[F, 2] UMAP coordinates of the decoder directions (cosine), or None without umap-learn."""
    if importlib.util.find_spec("umap") is None or importlib.util.find_spec("sklearn") is None:
        say("feature map skipped: umap-learn / scikit-learn are not installed "
            "(pip install 'monosemantic[analysis]')")
        return None
    if W_dec_FD.shape[0] < 16:
        say("feature map skipped: fewer than 16 features")
        return None
    import umap

    reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed)
    with warnings.catch_warnings():
        # umap warns that a fixed random_state disables its parallelism: we want reproducible.
        warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
        xy_F2 = reducer.fit_transform(W_dec_FD.float().numpy())
    return torch.from_numpy(xy_F2).float()


def default_n_clusters(n_features: int) -> int:
    return int(min(200, max(2, round(math.sqrt(n_features) / 2))))


def cluster_map(xy_F2: Tensor, n_clusters: int = 0, seed: int = 0) -> Tensor:
    """Cluster id [F] from k-means on the map coordinates (0 clusters = the default count)."""
    from sklearn.cluster import KMeans

    k = n_clusters or default_n_clusters(len(xy_F2))
    k = min(k, len(xy_F2))
    # sklearn's __init__ is unannotated, so n_init is inferred from its default "auto" as str.
    km = KMeans(n_clusters=k, n_init=4,  # pyright: ignore[reportArgumentType]
                random_state=seed).fit(xy_F2.double().numpy())
    return torch.from_numpy(np.asarray(km.labels_).astype(np.int64))


def peak_tokens(top_tokens_FRW: Tensor, top_offset_FR: Tensor, n_examples: int = 5) -> Tensor:
    """[F, r] the peak token of each feature's first `n_examples` top examples (-1 in empty
    slots), r = min(n_examples, the slots kept)."""
    r = min(n_examples, top_tokens_FRW.shape[1])
    return top_tokens_FRW[:, :r].gather(2, top_offset_FR[:, :r, None].long()).squeeze(2)


def feature_tokens(top_tokens_FRW: Tensor | None, top_offset_FR: Tensor | None,
                   logit_ids_FT: Tensor | None, n_examples: int = 5, n_logits: int = 5
                   ) -> list[set[int]]:
    """Per feature, the set of peak tokens of its first top examples; a feature that never
    fired (no examples) gets its top logit tokens instead (on a mid-layer dictionary those are
    noisier than what the feature fires on)."""
    peaks_FR = (peak_tokens(top_tokens_FRW, top_offset_FR, n_examples)
                if top_tokens_FRW is not None and top_offset_FR is not None else None)
    return feature_tokens_from_peaks(peaks_FR, logit_ids_FT, n_logits)


def feature_tokens_from_peaks(peaks_FR: Tensor | None, logit_ids_FT: Tensor | None,
                              n_logits: int = 5) -> list[set[int]]:
    """`feature_tokens` from the peak tokens [F, r] (`peak_tokens`) already taken."""
    sets: list[set[int]] = []
    if peaks_FR is not None:
        n_feat = len(peaks_FR)
    elif logit_ids_FT is not None:
        n_feat = len(logit_ids_FT)
    else:
        raise ValueError("feature tokens need the peak tokens or the logit ids")
    peaks = peaks_FR.tolist() if peaks_FR is not None else None  # one conversion, not F
    for f in range(n_feat):
        toks: set[int] = set()
        if peaks is not None:
            toks.update(t for t in peaks[f] if t >= 0)
        if not toks and logit_ids_FT is not None:
            toks.update(logit_ids_FT[f, :n_logits].tolist())
        sets.append(toks)
    return sets


def label_clusters(cluster_F: Tensor, tokens_F: list[set[int]],
                   decode: Callable[[int], str] | None = None, n_label: int = 3
                   ) -> list[dict]:
    """One dict per cluster id 0..k-1: id, size, label, tokens (the top tf-idf tokens).

    Tokens that display alike once stripped (" element" / "element") count as one."""
    decode = decode or (lambda t: f"<{t}>")
    k = int(cluster_F.max()) + 1 if len(cluster_F) else 0
    names: dict[int, str] = {}

    def name(t: int) -> str:
        if t not in names:
            text = decode(t)
            names[t] = text.strip() or repr(text)
        return names[t]

    per_cluster = [Counter() for _ in range(k)]
    first_id: dict[str, int] = {}
    for c, toks in zip(cluster_F.tolist(), tokens_F):
        texts = {name(t) for t in toks}
        for t in sorted(toks):
            first_id.setdefault(name(t), t)
        per_cluster[c].update(texts)
    n_with = Counter(t for counts in per_cluster for t in counts)
    out = []
    for c, counts in enumerate(per_cluster):
        scored = sorted(((n * math.log(k / n_with[t]), t) for t, n in counts.items()
                         if n_with[t] < k or k == 1), key=lambda st: (-st[0], st[1]))
        best = [t for _s, t in scored[:n_label]]
        out.append({"id": c, "size": int((cluster_F == c).sum()),
                    "label": " · ".join(best) if best else f"cluster {c}",
                    "tokens": [first_id[t] for t in best]})
    return out
