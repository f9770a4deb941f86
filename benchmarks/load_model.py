"""Load time of the embedded default model: first load (empty cache: assemble the GGUF,
de-quantize, write the safetensors cache) and second load (from the cache).

Each load runs in a fresh Python process, as a user's next command would, with
MONOSEMANTIC_CACHE pointing at an empty temp dir. Prints seconds for `load_model` itself and
for the whole process (imports included).

    .venv/bin/python benchmarks/load_model.py [--spec gemma-3-270m]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from monosemantic.models import load_model
t1 = time.perf_counter()
lm = load_model(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "n_layers": lm.n_layers,
                  "d_model": lm.d_model}))
"""


def timed_load(spec: str, cache_dir: str) -> dict:
    """Run one load in a child process; its JSON report plus the process wall time."""
    env = {**os.environ, "MONOSEMANTIC_CACHE": cache_dir, "MONOSEMANTIC_QUIET": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, spec], env=env, check=True,
                          capture_output=True, text=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_s"] = time.perf_counter() - start
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="gemma-3-270m", help="model spec passed to load_model")
    args = parser.parse_args()
    print(f"cpu cores visible: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="monosemantic-bench-cache-") as cache_dir:
        for label in ("first load (empty cache)", "second load (cached)"):
            r = timed_load(args.spec, cache_dir)
            print(f"{label}: load_model {r['load_s']:.1f} s, whole process {r['process_s']:.1f} s "
                  f"(imports {r['import_s']:.1f} s) -- {r['n_layers']} layers, "
                  f"d_model {r['d_model']}")


if __name__ == "__main__":
    main()
