"""Cost of `monosemantic graph`: wall time of its phases (record, edges, prune, interventions)
and memory, for several --max-feature-nodes caps in one run (peers compared under the same
load).

Replacement models:
- default: random topk skip transcoders on every layer of a tiny random Llama (no files);
- `--random-transcoders SPEC`: random topk transcoders (k, F below) on every layer of the
  model SPEC (e.g. gemma-3-270m): the real model's cost, with exactly k active features per
  layer and position (what a trained top-k set gives);
- `--set PATH`: a transcoder set folder (transcoders.json) or run folders.

Each cap runs in a forked child (the model is loaded once, before forking), so the peak RSS
is per configuration: the model plus that graph's work. `edge bytes` is the exact size of
the edge storage (computed rows, plus the square adjacency), the figure the cap bounds.

    .venv/bin/python benchmarks/graph.py --caps 0,64,256 --threads 1
    .venv/bin/python benchmarks/graph.py --random-transcoders gemma-3-270m --caps 256,1024
    .venv/bin/python benchmarks/graph.py --set /path/to/tcset --caps 1024
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from monosemantic.graph.command import checked_prompt, graph_edges
from monosemantic.graph.config import GraphConfig
from monosemantic.graph.frozen import record
from monosemantic.graph.interventions import check_interventions
from monosemantic.graph.loading import find_runs, load_replacement
from monosemantic.graph.nodes import logit_targets, node_set, node_values
from monosemantic.graph.prune import prune
from monosemantic.graph.replacement import TranscoderSet
from monosemantic.graph.scores import graph_scores
from monosemantic.models import LoadedModel, load_model
from monosemantic.sae import SAEConfig, create_sae

PROMPT = "The capital of France is the city of"  # 9 tokens with BOS on Gemma 3


@dataclass
class Row:
    cap: int
    tokens: int
    active: int
    targets: int
    passes: int
    edge_bytes: int
    seconds: dict[str, float]
    peak_rss_mb: float
    pearson: float | None
    replacement: float


def random_set(lm: LoadedModel, n_features: int, k: int) -> TranscoderSet:
    """Random topk skip transcoders on every layer."""
    tcs, sources = {}, {}
    for layer in range(lm.n_layers):
        torch.manual_seed(layer)
        cfg = SAEConfig(architecture="topk", d_in=lm.d_model, d_out=lm.d_model,
                        n_features=n_features, k=k, skip=True, apply_b_dec_to_input=False)
        tcs[layer] = create_sae(cfg).requires_grad_(False)
        sources[layer] = f"random_l{layer}"
    return TranscoderSet(tcs, sources)


def one_graph(lm: LoadedModel, rep: TranscoderSet, cap: int, batch_size: int,
              prompt: str) -> Row:
    cfg = GraphConfig(prompt=prompt, max_feature_nodes=cap, batch_size=batch_size)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    ids_1S = checked_prompt(lm, prompt)
    clean = record(lm, ids_1S)
    values = node_values(lm, rep, clean)
    nodes = node_set(lm, values, logit_targets(clean, None, 0.0, 1))
    seconds["record"] = time.perf_counter() - start
    active = nodes.n_features
    start = time.perf_counter()
    kept, adj = graph_edges(lm, clean, rep, nodes, cfg)
    seconds["edges"] = time.perf_counter() - start
    targets = kept.n_features + len(kept.logits.token_ids)
    rows_bytes = 0 if kept.n_features == active else targets * nodes.n_nodes * adj.element_size()
    start = time.perf_counter()
    weights = torch.zeros(kept.n_nodes)
    weights[kept.logit_start:] = torch.tensor(kept.logits.probs)
    pruned = prune(adj, weights, kept.kinds())
    scores = graph_scores(adj, weights, kept.kinds())
    seconds["prune"] = time.perf_counter() - start
    start = time.perf_counter()
    features_M = pruned.node_mask[:kept.n_features].nonzero().squeeze(1)
    check = check_interventions(lm, clean, rep, kept, adj, adj * pruned.edge_mask, features_M,
                                batch_size)
    seconds["interventions"] = time.perf_counter() - start
    return Row(cap=cap, tokens=nodes.n_pos, active=active, targets=targets,
               passes=-(-targets // batch_size),
               edge_bytes=rows_bytes + adj.numel() * adj.element_size(), seconds=seconds,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               pearson=check.pearson, replacement=scores.replacement)


def forked(lm: LoadedModel, rep: TranscoderSet, cap: int, batch_size: int, prompt: str,
           threads: int) -> Row:
    """`one_graph` in a forked child (the model shared, not pickled), for its own peak RSS."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()

    def child() -> None:
        torch.set_num_threads(threads)
        queue.put(one_graph(lm, rep, cap, batch_size, prompt))

    proc = ctx.Process(target=child)
    proc.start()
    row = queue.get()
    proc.join()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--set", type=Path, nargs="*", default=None)
    parser.add_argument("--random-transcoders", default=None, metavar="SPEC")
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--caps", default="0,64,256", help="comma-separated; 0 = no cap")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.set:
        lm, rep = load_replacement(find_runs(args.set), "cpu")
        what = f"set {' '.join(map(str, args.set))}"
    elif args.random_transcoders:
        lm = load_model(args.random_transcoders, device="cpu")
        rep = random_set(lm, args.features, args.k)
        what = f"{args.random_transcoders}, random topk transcoders F={args.features} " \
               f"k={args.k} on all {lm.n_layers} layers"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        tiny = importlib.import_module("helpers.tiny")  # the tests' tiny random models
        tok = tiny.tiny_tokenizer()
        lm = LoadedModel.from_hf(tiny.tiny_model("llama", len(tok)), tok, spec="tiny-llama")
        rep = random_set(lm, args.features, args.k)
        what = f"tiny random llama (d={lm.d_model}, {lm.n_layers} layers), random topk " \
               f"transcoders F={args.features} k={args.k} on every layer"
    print(f"# graph benchmark: {what}; prompt {args.prompt!r}; batch {args.batch_size}; "
          f"{args.threads} thread(s)")
    print("| cap | tokens | active features | targets | backward passes | edge storage MB | "
          "record s | edges s | prune s | interventions s | total s | peak RSS MB | "
          "replacement | Pearson |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cap in [int(c) for c in args.caps.split(",")]:
        row = forked(lm, rep, cap, args.batch_size, args.prompt, args.threads)
        s = row.seconds
        pearson = "n/a" if row.pearson is None else f"{row.pearson:.3f}"
        print(f"| {row.cap or 'none'} | {row.tokens} | {row.active} | {row.targets} | "
              f"{row.passes} | {row.edge_bytes / 1e6:.1f} | {s['record']:.2f} | "
              f"{s['edges']:.2f} | {s['prune']:.2f} | {s['interventions']:.2f} | "
              f"{sum(s.values()):.2f} | {row.peak_rss_mb:.0f} | {row.replacement:.3f} | "
              f"{pearson} |", flush=True)


if __name__ == "__main__":
    main()
