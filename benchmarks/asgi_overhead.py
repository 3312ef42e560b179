"""CPU per request of a generated service's app, in process, and of each of its middleware.

No server and no network: requests are handed straight to the ASGI app, one after the
other, and the CPU time of the process (time.process_time) is divided by their number.
So the figures are the app's own cost, without uvicorn's HTTP parsing and socket writes
(which bare FastAPI pays too), and without noise from the load generator. Run with the
interpreter of a rendered service (bench_service.py leaves them in /tmp/cfs-bench):

    /tmp/cfs-bench/on/.venv/bin/python benchmarks/asgi_overhead.py
    /tmp/cfs-bench/on/.venv/bin/python benchmarks/asgi_overhead.py --path "/api/v1/items?limit=20" \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/cfs_bench

It measures bare FastAPI (bare_app.py), the service as built, the service without any
middleware, and the service without each middleware in turn (the ablation: what the
service saves when that one layer is gone). Settings as in bench_service.py: staging,
JSON logs at INFO to a file, docs off, rate limits high, no REDIS_URL unless given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PACKAGE = "orders_service"


def scope_for(path: str) -> dict[str, Any]:
    raw, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw,
        "raw_path": raw.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def drive(app: Any, path: str, requests: int, repeats: int) -> tuple[float, int]:
    """Median CPU microseconds per request over `repeats` batches, and the last status."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    for _ in range(200):  # Warm-up: caches, pools, first-use paths.
        await app(scope_for(path), receive, send)
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(requests):
            await app(scope_for(path), receive, send)
        samples.append((time.process_time() - started) / requests * 1e6)
    return statistics.median(samples), status


async def measure(build: Callable[[], Any], path: str, requests: int, repeats: int) -> tuple[float, int]:
    app = build()
    router = getattr(app, "router", None)
    lifespan = router.lifespan_context(app) if router is not None else contextlib.nullcontext()
    async with lifespan:
        return await drive(app, path, requests, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/health/live")
    parser.add_argument("--requests", type=int, default=3000, help="requests per batch (3000)")
    parser.add_argument("--repeats", type=int, default=5, help="batches; the median is shown (5)")
    parser.add_argument("--database-url", default="sqlite+aiosqlite:////tmp/cfs-bench/seed.db")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--log", type=Path, default=Path("/tmp/cfs-bench/asgi-overhead.log"))
    args = parser.parse_args()

    os.environ.update(
        {
            "ENVIRONMENT": "staging",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DOCS_ENABLED": "false",
            "DATABASE_URL": args.database_url,
            "RATE_LIMIT_DEFAULT": "1000000/minute;100000000/hour",
        }
    )
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    log = args.log.open("w")
    sys.stdout, stdout = log, sys.stdout  # configure_logging() writes to sys.stdout

    main_module = importlib.import_module(f"{PACKAGE}.main")
    settings_module = importlib.import_module(f"{PACKAGE}.settings")
    original = main_module.build_middleware

    def service(without: str | None = None, none: bool = False) -> Callable[[], Any]:
        def build() -> Any:
            def middleware(*a: Any, **k: Any) -> list[Any]:
                stack = original(*a, **k)
                if none:
                    return []
                return [m for m in stack if m.cls.__name__ != without]

            main_module.build_middleware = middleware
            try:
                return main_module.create_app(settings_module.Settings())
            finally:
                main_module.build_middleware = original

        return build

    def bare() -> Any:
        sys.path.insert(0, str(BENCH_DIR))
        return importlib.import_module("bare_app").app

    layers = [m.cls.__name__ for m in original(settings_module.Settings(), docs_paths=())]
    variants: list[tuple[str, Callable[[], Any]]] = [
        ("bare FastAPI (bare_app.py)", bare),
        ("service, as built", service()),
        ("service, no middleware at all", service(none=True)),
        *((f"service without {name}", service(without=name)) for name in layers),
    ]
    results = []
    for label, build in variants:
        micros, status = asyncio.run(measure(build, args.path, args.requests, args.repeats))
        results.append((label, micros, status))
    sys.stdout = stdout
    log.close()

    full = results[1][1]
    print(f"CPU per request of GET {args.path}, in process (median of {args.repeats} x {args.requests}):")
    for label, micros, status in results:
        saving = f"  saves {full - micros:5.1f} us" if label.startswith("service without") else ""
        print(f"  {label:<48} {micros:7.1f} us  (HTTP {status}){saving}")
    middleware, over_bare = full - results[2][1], full - results[0][1]
    print(f"  middleware in all: {middleware:.1f} us; service over bare: {over_bare:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
