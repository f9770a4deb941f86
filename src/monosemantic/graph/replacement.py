"""The replacement model's MLPs: which layers are replaced, and by which features.

A `Replacement` turns a replaced layer's `blocks.L.hook_mlp_in` into feature activations and
writes its features' decoder rows into `blocks.L'.hook_mlp_out` of every layer L' the
features reach. A per-layer transcoder reaches its own layer only (L' = L); a cross-layer
transcoder (CLT) reaches every CLT layer from L on. The graph code uses nothing else: a CLT
plugs in as `CLTReplacement` (`writes` returning the later layers too, `output` summing the
writes of every earlier source layer).

Codes are dense `[B, S, F_L]` tensors: a prompt's positions times one layer's dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from monosemantic.sae import SAE
from monosemantic.sae.clt import CrossLayerTranscoder


@runtime_checkable
class Replacement(Protocol):
    """What the attribution graph needs of a replacement model's MLPs."""

    kind: str
    """`transcoders` (per layer) or `clt` (one cross-layer transcoder)."""
    layers: tuple[int, ...]
    """Layers whose MLP output is replaced (ascending); the others are error nodes whole."""

    def source(self, layer: int) -> str:
        """Where the features of `layer` come from (a run folder), for graph.json."""
        ...

    def encode(self, layer: int, x_BSD: Tensor) -> Tensor:
        """Feature activations [B, S, F] of `layer` from its `hook_mlp_in` activations."""
        ...

    def encoder_rows(self, layer: int, feature_N: Tensor) -> Tensor:
        """[N, D]: d pre-activation / d hook_mlp_in of `layer`, one row per feature."""
        ...

    def writes(self, layer: int) -> tuple[int, ...]:
        """The layers whose `hook_mlp_out` the features of `layer` write."""
        ...

    def decoder_rows(self, source: int, target: int, feature_N: Tensor) -> Tensor:
        """[N, D]: what one unit of each feature of layer `source` adds to `hook_mlp_out` of
        layer `target`."""
        ...

    def output(self, layer: int, codes: Mapping[int, Tensor], x_BSD: Tensor) -> Tensor:
        """The prediction of `hook_mlp_out` of `layer` [B, S, D]: the writes of `codes`
        (source layer -> [B, S, F]) into it, plus its bias and any skip term of `x_BSD`
        (`layer`'s own `hook_mlp_in`, through which gradients flow)."""
        ...

    def describe(self) -> dict[str, Any]:
        """graph.json's `replacement` entry."""
        ...


class TranscoderSet:
    """Per-layer transcoders: layer L's reads `blocks.L.hook_mlp_in` and writes
    `blocks.L.hook_mlp_out` only."""

    kind = "transcoders"

    def __init__(self, transcoders: Mapping[int, SAE], sources: Mapping[int, str]):
        self.transcoders = dict(sorted(transcoders.items()))
        self.sources = dict(sources)
        self.layers = tuple(self.transcoders)

    def source(self, layer: int) -> str:
        return self.sources[layer]

    def encode(self, layer: int, x_BSD: Tensor) -> Tensor:
        tc = self.transcoders[layer]
        lead = x_BSD.shape[:-1]
        f_ND = tc.encode(x_BSD.reshape(-1, x_BSD.shape[-1]).to(tc.W_enc.dtype))
        return f_ND.reshape(*lead, -1)

    def encoder_rows(self, layer: int, feature_N: Tensor) -> Tensor:
        return self.transcoders[layer].W_enc_DF.detach()[:, feature_N.to(self._device(layer))].T

    def writes(self, layer: int) -> tuple[int, ...]:
        return (layer,)

    def decoder_rows(self, source: int, target: int, feature_N: Tensor) -> Tensor:
        if target != source:
            raise ValueError(f"a per-layer transcoder of layer {source} writes no layer {target}")
        return self.transcoders[source].W_dec_FD.detach()[feature_N.to(self._device(source))]

    def output(self, layer: int, codes: Mapping[int, Tensor], x_BSD: Tensor) -> Tensor:
        tc = self.transcoders[layer]
        return tc.add_skip(tc.decode(codes[layer]), x_BSD.to(tc.W_enc.dtype))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": list(self.layers),
                "runs": {str(layer): self.sources[layer] for layer in self.layers}}

    def _device(self, layer: int):
        return self.transcoders[layer].W_dec_FD.device


class CLTReplacement:
    """One cross-layer transcoder: the features of layer L read `blocks.L.hook_mlp_in` and
    write `blocks.L'.hook_mlp_out` of every CLT layer L' >= L (docs/clt.md)."""

    kind = "clt"

    def __init__(self, clt: CrossLayerTranscoder, source: str):
        self.clt = clt
        self.run = source
        self.layers = tuple(clt.layers)

    def source(self, layer: int) -> str:
        return self.run

    def encode(self, layer: int, x_BSD: Tensor) -> Tensor:
        return self.clt.encode(layer, x_BSD.to(self._dtype))

    def encoder_rows(self, layer: int, feature_N: Tensor) -> Tensor:
        W_enc_DF = self.clt.encoder(layer).W_enc_DF.detach()
        return W_enc_DF[:, feature_N.to(W_enc_DF.device)].T

    def writes(self, layer: int) -> tuple[int, ...]:
        return self.layers[self.clt.index(layer):]

    def decoder_rows(self, source: int, target: int, feature_N: Tensor) -> Tensor:
        if target not in self.writes(source):
            raise ValueError(f"the CLT's layer {source} features write no layer {target}")
        W_dec_FD = self.clt.W_dec_to(source, target).detach()
        return W_dec_FD[feature_N.to(W_dec_FD.device)]

    def output(self, layer: int, codes: Mapping[int, Tensor], x_BSD: Tensor) -> Tensor:
        # No skip term (CLTs have none): x_BSD is not read.
        y_BSD = self.clt.bias(layer)
        for source in self.layers[:self.clt.index(layer) + 1]:
            y_BSD = y_BSD + self.clt.decode_to(source, layer, codes[source].to(self._dtype))
        return y_BSD

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": list(self.layers), "run": self.run,
                "runs": {str(layer): self.run for layer in self.layers}}

    @property
    def _dtype(self):
        return self.clt.b_dec.dtype
