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
service saves when that one layer is gone), each in a fresh process,
in rotation. Settings as in bench_service.py: staging,
JSON logs at INFO to a file, docs off, rate limits high, no REDIS_URL unless given.

CPU time on a shared VM swings by a factor of two from minute to minute. With
`--instructions` each variant instead runs once under valgrind's callgrind, which counts
the instructions executed per request (every thread, aiosqlite's included), counted only
while the measured requests run (not start-up or warm-up). The count is the same from run
to run, whatever else the machine is doing, so it shows small changes that timings
cannot; it weighs every instruction alike, so it is a proxy for CPU time, not a
measure of it (~30 s per variant):

    /tmp/cfs-bench/on/.venv/bin/python benchmarks/asgi_overhead.py --instructions --requests 200 \\
        --path "/api/v1/items?limit=20"

A service with authentication needs AUTH_ISSUER and AUTH_AUDIENCE in the environment
(an issuer that answers: the lifespan fetches its keys) and a token: `--header
"Authorization: Bearer <token>"` adds it to every request. `--variants service,bare`
measures only those (the ablations are listed in the output of a full run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PACKAGE = "orders_service"


EXTRA_HEADERS: list[tuple[bytes, bytes]] = []  # --header


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
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            *EXTRA_HEADERS,
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Sink:
    """The ASGI `send` of the measured requests: keeps the last response's status."""

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def drive(app: Any, path: str, requests: int, repeats: int) -> tuple[float, int]:
    """Median CPU microseconds per request over `repeats` batches, and the last status."""
    send = Sink()
    for _ in range(200):  # Warm-up: caches, pools, first-use paths.
        await app(scope_for(path), receive, send)
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(requests):
            await app(scope_for(path), receive, send)
        samples.append((time.process_time() - started) / requests * 1e6)
    return statistics.median(samples), send.status


async def drive_counted(app: Any, path: str, requests: int) -> tuple[float, int]:
    """Warm up, then run `requests` requests while callgrind counts (see count_instructions)."""
    send = Sink()
    for _ in range(50):
        await app(scope_for(path), receive, send)
    handshake("READY")
    for _ in range(requests):
        await app(scope_for(path), receive, send)
    handshake("DONE")
    return 0.0, send.status


def handshake(line: str) -> None:
    """Tell the parent where we are (on the real stdout) and wait for its answer."""
    print(line, file=sys.__stdout__, flush=True)
    sys.stdin.readline()


async def measure(
    build: Callable[[], Any], path: str, requests: int, repeats: int, *, counted: bool = False
) -> tuple[float, int]:
    app = build()
    router = getattr(app, "router", None)
    lifespan = router.lifespan_context(app) if router is not None else contextlib.nullcontext()
    async with lifespan:
        if counted:
            return await drive_counted(app, path, requests)
        return await drive(app, path, requests, repeats)


def build_variant(variant: str) -> Callable[[], Any]:
    """ "bare", "service", "none" (no middleware), "without:<MiddlewareClass>", or
    "api-dependencies:N" (the service with only the first N of the dependencies that
    features put on every API route, such as authentication's guard)."""
    if variant == "bare":

        def bare() -> Any:
            sys.path.insert(0, str(BENCH_DIR))
            return importlib.import_module("bare_app").app

        return bare
    main_module = importlib.import_module(f"{PACKAGE}.main")
    service_module = importlib.import_module(f"{PACKAGE}.service")
    original = main_module.build_middleware
    without = variant.removeprefix("without:") if variant.startswith("without:") else None

    def middleware(*a: Any, **k: Any) -> list[Any]:
        stack = original(*a, **k)
        if variant == "none":
            return []
        return [m for m in stack if m.cls.__name__ != without]

    if variant.startswith("api-dependencies:"):
        keep = int(variant.partition(":")[2])
        kept: list[Any] = []

        def limited(method: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
            def dependencies(service: Any) -> list[Any]:
                found = []
                for dependency in method(service):
                    if len(kept) < keep:
                        kept.append(dependency)
                        found.append(dependency)
                return found

            return dependencies

        for feature in service_module.FEATURES:
            feature.api_dependencies = limited(feature.api_dependencies)

    def service() -> Any:
        main_module.build_middleware = middleware
        try:
            return main_module.create_app(service_module.load_settings())
        finally:
            main_module.build_middleware = original

    return service


def configure_environment(args: argparse.Namespace) -> None:
    os.environ.update(
        {
            "ENVIRONMENT": "staging",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DOCS_ENABLED": "false",
            "DATABASE_URL": args.database_url,
            "RATE_LIMIT_DEFAULT": "1000000/minute;100000000/hour",
            "RATE_LIMIT_AUTHENTICATED": "1000000/minute;100000000/hour",
        }
    )
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ.pop("REDIS_URL", None)


def add_headers(headers: list[str]) -> None:
    for header in headers:
        name, _, value = header.partition(":")
        EXTRA_HEADERS.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))


def run_one(args: argparse.Namespace) -> int:
    """In this process: one variant, printed as `RESULT <us> <status>`."""
    configure_environment(args)
    add_headers(args.header)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as log:
        stdout, sys.stdout = sys.stdout, log  # configure_logging() writes to sys.stdout
        try:
            micros, status = asyncio.run(
                measure(
                    build_variant(args.variant),
                    args.path,
                    args.requests,
                    args.repeats,
                    counted=args.instructions,
                )
            )
        finally:
            sys.stdout = stdout
    print(f"RESULT {micros:.2f} {status}")
    return 0


def count_instructions(variant: str, passed: list[str], requests: int) -> tuple[int, int]:
    """Instructions per request of one variant under callgrind, and its HTTP status.

    Instrumentation starts off and is switched on (callgrind_control) only once the
    variant has started and warmed up, and off again after the measured requests.
    """
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "valgrind.log"
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--log-file={log}",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable, __file__, "--variant", variant, "--instructions", *passed,
        ]  # fmt: skip
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        for expected, switch in (("READY", "--instr=on"), ("DONE", "--instr=off")):
            line = proc.stdout.readline().strip()
            if line != expected:
                proc.kill()
                raise RuntimeError(f"{variant}: expected {expected}, got {line!r}; see {log}")
            subprocess.run(["callgrind_control", switch, str(proc.pid)], capture_output=True, check=True)
            proc.stdin.write("go\n")
            proc.stdin.flush()
        rest = proc.stdout.read()
        proc.wait()
        match = re.search(r"Collected : (\d+)", log.read_text())
        status = re.search(r"^RESULT \S+ (\d+)$", rest, re.M)
        if proc.returncode != 0 or not match or not status:
            raise RuntimeError(f"{variant} failed under callgrind:\n{rest}\n{log.read_text()[-2000:]}")
        return int(match.group(1)) // requests, int(status.group(1))


def report_instructions(args: argparse.Namespace, variants: list[str], passed: list[str]) -> int:
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("--instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    with ThreadPoolExecutor(max_workers=2) as pool:  # Counts do not depend on the load.
        counts = pool.map(lambda v: count_instructions(v, passed, args.requests), variants)
        counted = dict(zip(variants, counts, strict=True))
    full = counted["service"][0] if "service" in counted else 0
    print(f"Instructions per request of GET {args.path}, in process (callgrind, {args.requests} requests)")
    for variant in variants:
        count, status = counted[variant]
        label = LABELS.get(variant, f"service without {variant.removeprefix('without:')}")
        note = f"  saves {full - count:>9,}" if variant.startswith("without:") else ""
        print(f"  {label:<46} {count:>11,}  (HTTP {status}){note}")
    if {"service", "none", "bare"} <= set(counted):
        bare = counted["bare"][0]
        print(
            f"  middleware in all: {full - counted['none'][0]:,}; service over bare: {full - bare:,}"
            f" ({bare / full:.2f}x bare's count)"
        )
    return 0


LABELS = {
    "bare": "bare FastAPI (bare_app.py)",
    "service": "service, as built",
    "none": "service, no middleware",
    "api-dependencies:0": "service, no API dependencies",
    "api-dependencies:1": "service, the first API dependency only",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/health/live")
    parser.add_argument("--requests", type=int, default=3000, help="requests per batch (3000)")
    parser.add_argument("--repeats", type=int, default=3, help="batches per process; their median (3)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant, in rotation (3)")
    parser.add_argument("--database-url", default="sqlite+aiosqlite:////tmp/cfs-bench/seed.db")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--log", type=Path, default=Path("/tmp/cfs-bench/asgi-overhead.log"))
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind instead of CPU time"
    )
    parser.add_argument(
        "--header", action="append", default=[], help='"Name: value" sent with every request (repeatable)'
    )
    parser.add_argument("--variants", help="comma-separated subset of the variants (service,bare,...)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant
    args = parser.parse_args()
    if args.variant:
        return run_one(args)

    configure_environment(args)
    service_module = importlib.import_module(f"{PACKAGE}.service")
    feature_module = importlib.import_module(f"{PACKAGE}.feature")
    main_module = importlib.import_module(f"{PACKAGE}.main")
    service = feature_module.Service(service_module.load_settings(), service_module.FEATURES)
    layers = [m.cls.__name__ for m in main_module.build_middleware(service)]
    variants = ["bare", "service", "none", *(f"without:{name}" for name in layers)]
    if args.variants:
        chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
        variants += [v for v in chosen if re.fullmatch(r"api-dependencies:\d+", v)]
        unknown = sorted(set(chosen) - set(variants))
        if unknown:
            parser.error(f"--variants: unknown {unknown}; choose from {variants}")
        variants = [v for v in variants if v in chosen]
    samples: dict[str, list[float]] = {v: [] for v in variants}
    statuses: dict[str, int] = {}
    passed = ["--path", args.path, "--requests", str(args.requests), "--repeats", str(args.repeats)]
    passed += ["--database-url", args.database_url, "--redis-url", args.redis_url, "--log", str(args.log)]
    for header in args.header:
        passed += ["--header", header]
    if args.instructions:
        return report_instructions(args, variants, passed)
    for round_number in range(args.rounds):
        shift = round_number % len(variants)
        for variant in variants[shift:] + variants[:shift]:  # Each in a fresh process.
            proc = subprocess.run(
                [sys.executable, __file__, "--variant", variant, *passed],
                capture_output=True,
                text=True,
                check=False,
            )
            match = re.search(r"^RESULT (\S+) (\d+)$", proc.stdout, re.M)
            if not match:
                print(f"{variant} failed:\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
                return 1
            samples[variant].append(float(match.group(1)))
            statuses[variant] = int(match.group(2))

    result = {v: statistics.median(s) for v, s in samples.items()}
    full = result.get("service", 0.0)
    print(
        f"CPU per request of GET {args.path}, in process: median of {args.rounds} processes, "
        f"each the median of {args.repeats} x {args.requests} requests"
    )
    for variant in variants:
        label = LABELS.get(variant, f"service without {variant.removeprefix('without:')}")
        saving = f"  saves {full - result[variant]:5.1f} us" if variant.startswith("without:") else ""
        runs = ", ".join(f"{s:.0f}" for s in samples[variant])
        print(f"  {label:<46} {result[variant]:7.1f} us  (HTTP {statuses[variant]}; {runs}){saving}")
    if {"service", "none", "bare"} <= set(result):
        middleware, over_bare = full - result["none"], full - result["bare"]
        print(f"  middleware in all: {middleware:.1f} us; service over bare: {over_bare:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
