"""How fast the default offline corpus yields documents, and packed tokens with a tokenizer.

    .venv/bin/python benchmarks/corpus_throughput.py --docs 5000
    .venv/bin/python benchmarks/corpus_throughput.py --docs 5000 --tokenizer path/or/hub-id

Without --tokenizer it uses the tiny byte-level BPE the tests train (tests/helpers/tiny.py).
Times are wall clock on whatever the machine is doing at the moment; report them as rough.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

from monosemantic.data import CorpusConfig, CorpusReport, iter_documents, pack_contexts


def _tokenizer(spec: str | None):
    if spec is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from helpers.tiny import tiny_tokenizer

        return tiny_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000, help="documents to read")
    parser.add_argument("--ctx-len", type=int, default=256)
    parser.add_argument("--tokenizer", default=None, help="HF tokenizer dir or id (default: tiny)")
    args = parser.parse_args()
    cfg = CorpusConfig(max_documents=args.docs)

    start = time.perf_counter()
    first = next(iter_documents(cfg))
    latency = time.perf_counter() - start
    print(f"first document after {latency:.2f} s ({first.origin})")

    report = CorpusReport()
    start = time.perf_counter()
    chars = sum(len(d.text) for d in iter_documents(cfg, report))
    read_s = time.perf_counter() - start
    print(report.summary())
    print(f"documents only: {report.documents / read_s:,.0f} docs/s, "
          f"{chars / read_s / 1e6:.1f} M chars/s ({read_s:.1f} s)")

    tokenizer = _tokenizer(args.tokenizer)
    start = time.perf_counter()
    n_contexts = sum(1 for _ in pack_contexts(tokenizer, iter_documents(cfg), args.ctx_len))
    pack_s = time.perf_counter() - start
    tokens = n_contexts * args.ctx_len
    print(f"read + tokenize + pack ({type(tokenizer).__name__}, ctx_len {args.ctx_len}): "
          f"{report.documents / pack_s:,.0f} docs/s, {tokens / pack_s:,.0f} tokens/s, "
          f"{tokens / max(chars, 1):.2f} tokens/char ({n_contexts:,} contexts, {pack_s:.1f} s)")
    # Sanity for the numbers above: the stream really is what the first pass read.
    assert next(itertools.islice(iter_documents(cfg), 1)).text == first.text


if __name__ == "__main__":
    main()
