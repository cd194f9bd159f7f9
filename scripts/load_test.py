"""Load test for ``blip serve``: N concurrent loopback clients posting images for a bounded time
(and at most a bounded number of requests), reporting requests/s, p50/p99 latency and errors.

    python scripts/load_test.py                       # starts the demo server twice over: batching on, off
    python scripts/load_test.py --url http://127.0.0.1:8000   # an already-running server
    python scripts/load_test.py --clients 32 --duration 30 --json load.json

Without ``--url`` it starts one local Ray Serve instance with two applications over the demo
captioning model, ``/batched`` (``--max-batch-size``) and ``/unbatched`` (batch size 1), and
loads each in turn.  A table goes to stdout, the same figures as JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(url: str, endpoint: str, images: list[Path], clients: int, duration: float,
         max_requests: int, fields: dict) -> dict:  # fmt: skip
    """Run ``clients`` threads against ``url + endpoint`` until ``duration`` seconds pass or
    ``max_requests`` have been sent; returns the figures."""
    payloads = [(p.name, p.read_bytes()) for p in images]
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + duration

    def client(k: int) -> None:
        session = requests.Session()
        i = k
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
            name, data = payloads[i % len(payloads)]
            i += clients
            files = {"image": (name, data, "image/png")}
            files.update({key: (None, str(v)) for key, v in fields.items()})
            start = time.perf_counter()
            try:
                response = session.post(f"{url}{endpoint}", files=files, timeout=120)
                status = str(response.status_code)
            except requests.RequestException as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - start
            with lock:
                if status == "200":
                    latencies.append(elapsed)
                else:
                    errors[status] = errors.get(status, 0) + 1

    begin = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    lat = np.array(latencies) * 1000
    return {
        "url": url + endpoint,
        "clients": clients,
        "seconds": round(wall, 3),
        "ok": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / wall, 3) if wall else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
    }


def table(rows: list[dict]) -> str:
    head = f"{'run':<12} {'clients':>7} {'ok':>6} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['run']:<12} {r['clients']:>7} {r['ok']:>6} {sum(r['errors'].values()):>7} "
            f"{r['requests_per_s']:>8.2f} {r['p50_ms'] or 0:>8.1f} {r['p99_ms'] or 0:>8.1f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="load this running server instead of starting the demo server")
    p.add_argument("--endpoint", default="/caption")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    p.add_argument("--max-requests", type=int, default=5000, help="at most this many per run")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=4, help="sequential requests before each run")
    p.add_argument(
        "--images", nargs="*", type=Path, default=sorted((ROOT / "examples").glob("*.png"))
    )
    p.add_argument("--field", action="append", default=[], metavar="NAME=VALUE",
                   help="extra form field, e.g. --field question='what color?' for /vqa")  # fmt: skip
    p.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = p.parse_args(argv)
    fields = dict(f.split("=", 1) for f in args.field)
    if not args.images:
        p.error("no --images to send")

    targets = [("server", args.url)] if args.url else None
    started = False
    if targets is None:
        from blip_apps.serve import server
        from blip_apps.serve.app import ServeOptions, default_models

        task = {"/caption": "caption", "/vqa": "vqa"}.get(args.endpoint, "retrieval")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        queue = max(64, 2 * args.clients)  # a load the queue can hold: no 503 by design
        targets = []
        for run, batch in (("batched", args.max_batch_size), ("unbatched", 1)):
            options = ServeOptions(
                models=default_models(task), max_batch_size=batch,
                batch_wait_timeout_s=0.01 if batch > 1 else 0.0,
                max_ongoing_requests=max(2 * batch, 2), max_queued_requests=queue,
            )  # fmt: skip
            url = server.start(options, port=port, name=run, route_prefix=f"/{run}")
            targets.append((run, url))
        started = True
    rows = []
    try:
        for run, url in targets:
            for path in args.images[: args.warmup]:
                files = {"image": (path.name, path.read_bytes())}
                files.update({k: (None, v) for k, v in fields.items()})
                requests.post(f"{url}{args.endpoint}", files=files, timeout=120)
            row = load(url, args.endpoint, args.images, args.clients, args.duration,
                       args.max_requests, fields)  # fmt: skip
            rows.append({"run": run, **row})
    finally:
        if started:
            server.stop()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"runs": rows}, indent=2) + "\n")
    return 0 if all(not r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
