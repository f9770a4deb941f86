"""Load test of the feature browser: many concurrent clients on loopback for a bounded time.

    .venv/bin/python benchmarks/web_load.py runs/web16k                 # starts `serve` itself
    .venv/bin/python benchmarks/web_load.py --url http://127.0.0.1:8000 # a server already up
    .venv/bin/python benchmarks/web_load.py runs/web16k --clients 64 --seconds 30 --json out.json

Each client loops: pick a random feature id, GET /api/features/{id} (feature JSON) or
/feature/{id} (the feature page's HTML) with probability --page-share, and record the latency.
Reports, per kind: requests, requests/s, p50 / p95 / p99 latency in ms as the clients see it,
the p50 / p95 of the time spent inside the app (its `Server-Timing` header: excludes waiting in
the socket and the clients' own CPU), and errors (any status other than 200, or a connection
failure). The target from issue 6: p95 < 100 ms for feature
JSON on a 16k-feature run, with zero errors. The server and the clients share the machine's
cores: say so next to the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "monosemantic.cli", "serve", str(run), "--port", str(port),
           "--log-level", "warning"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)


async def wait_up(url: str, timeout: float = 60.0) -> int:
    """Feature count of the server at `url`, once it answers."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                r = await client.get(f"{url}/api/overview")
                if r.status_code == 200:
                    return int(r.json()["n_features"])
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"no server answering at {url}")
            await asyncio.sleep(0.2)


async def client_loop(client: httpx.AsyncClient, url: str, n_features: int, stop: float,
                      page_share: float, rng: random.Random,
                      out: dict[str, list[float]], errors: dict[str, int],
                      server: dict[str, list[float]]) -> None:
    while time.monotonic() < stop:
        kind = "page" if rng.random() < page_share else "json"
        fid = rng.randrange(n_features)
        path = f"/feature/{fid}" if kind == "page" else f"/api/features/{fid}"
        t0 = time.perf_counter()
        try:
            r = await client.get(url + path)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        dt = time.perf_counter() - t0
        if ok:
            out[kind].append(dt)
            timing = r.headers.get("server-timing", "")
            if timing.startswith("app;dur="):
                server[kind].append(float(timing[8:]) / 1e3)
        else:
            errors[kind] += 1


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


async def run_load(url: str, clients: int, seconds: float, page_share: float,
                   seed: int, server_pid: int | None = None) -> dict:
    n_features = await wait_up(url)
    out: dict[str, list[float]] = {"json": [], "page": []}
    errors = {"json": 0, "page": 0}
    server: dict[str, list[float]] = {"json": [], "page": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        # Warm-up: first requests pay for lazy caches (vocabulary) and connection set-up.
        await asyncio.gather(*(client.get(f"{url}/api/features/{i}") for i in range(8)))
        cpu0 = cpu_seconds(server_pid) if server_pid else None
        start = time.monotonic()
        stop = start + seconds
        await asyncio.gather(*(client_loop(client, url, n_features, stop, page_share,
                                           random.Random(seed + i), out, errors, server)
                               for i in range(clients)))
        elapsed = time.monotonic() - start
        cpu1 = cpu_seconds(server_pid) if server_pid else None
    report = {"url": url, "n_features": n_features, "clients": clients, "seconds": elapsed,
              "cpu_count": os.cpu_count(), "kinds": {}}
    for kind, values in out.items():
        values.sort()
        in_app = sorted(server[kind])
        report["kinds"][kind] = {
            "requests": len(values), "errors": errors[kind],
            "requests_per_s": len(values) / elapsed,
            "p50_ms": 1e3 * percentile(values, 0.50), "p95_ms": 1e3 * percentile(values, 0.95),
            "p99_ms": 1e3 * percentile(values, 0.99),
            "app_p50_ms": 1e3 * percentile(in_app, 0.50),
            "app_p95_ms": 1e3 * percentile(in_app, 0.95)}
    total = sum(len(v) for v in out.values())
    report["total_requests_per_s"] = total / elapsed
    report["total_errors"] = sum(errors.values())
    if cpu0 is not None and cpu1 is not None and total:
        # The whole server process (HTTP parsing, routing, the app), per request served.
        report["server_cpu_ms_per_request"] = 1e3 * (cpu1 - cpu0) / total
        report["server_cpu_share"] = (cpu1 - cpu0) / elapsed
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", type=Path, help="run to serve (starts `monosemantic serve`)")
    p.add_argument("--url", help="use a server already running here instead")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of the timed phase")
    p.add_argument("--page-share", type=float, default=0.2,
                   help="fraction of requests that fetch the feature page (HTML)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args()
    if (args.run is None) == (args.url is None):
        p.error("give a RUN to serve or --url of a running server")
    server = None
    url = args.url
    if args.run is not None:
        port = _free_port()
        server = start_server(args.run, port)
        url = f"http://127.0.0.1:{port}"
    try:
        report = asyncio.run(run_load(url.rstrip("/"), args.clients, args.seconds,
                                      args.page_share, args.seed,
                                      server.pid if server is not None else None))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
    print(f"{report['n_features']:,} features, {report['clients']} clients, "
          f"{report['seconds']:.1f} s, {report['cpu_count']} CPUs shared by server and clients")
    for kind, k in report["kinds"].items():
        print(f"  {kind:5s} {k['requests']:7,} ok  {k['errors']} errors  "
              f"{k['requests_per_s']:8.1f} req/s  p50 {k['p50_ms']:6.1f} ms  "
              f"p95 {k['p95_ms']:6.1f} ms  p99 {k['p99_ms']:6.1f} ms  "
              f"(in the app: p50 {k['app_p50_ms']:.1f} ms, p95 {k['app_p95_ms']:.1f} ms)")
    print(f"  total {report['total_requests_per_s']:.1f} req/s, "
          f"{report['total_errors']} errors")
    if "server_cpu_ms_per_request" in report:
        print(f"  server process: {report['server_cpu_ms_per_request']:.2f} ms CPU per request, "
              f"{report['server_cpu_share']:.2f} cores busy on average")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["total_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
