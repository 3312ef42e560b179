"""Where a server's time goes under load: py-spy samples, summed by function and by area.

Used by `bench_service.py --profile TARGET:ENDPOINT` (see its docstring); it can also
summarize a py-spy "raw" (collapsed stacks) file saved earlier:

    uv run python benchmarks/profile_service.py /tmp/cfs-bench/profile-on-memory-list-pg.txt

or show what a service's imports cost at start (python -X importtime, by package):

    uv run python benchmarks/profile_service.py --imports /tmp/cfs-bench/on/.venv/bin/python \\
        orders_service.cli

py-spy comes from PyPI through `uv tool run` when it is not on PATH. It samples the
server process (`--nonblocking`, so the server is not paused) while the load runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Areas of the code, matched against a frame's "function (file:line)" in this order.
# Each sample is charged to the area of its innermost frame that matches one (walking
# from the leaf to the root): time spent in the JSON encoder for the access log is the
# access log's, time spent writing the socket is uvicorn's, whoever called it. The
# middleware wrap the whole request, so "is on the stack" would say nothing.
AREAS: tuple[tuple[str, str], ...] = (
    (
        "authentication (identity/, PyJWT, cryptography)",
        r"/identity/|[(/]jwt/|[(/]cryptography/",
    ),
    ("rate limiter (limits, rate_limiting.py)", r"[(/]limits/|rate_limiting\.py"),
    (
        "metrics (RequestMetrics, prometheus_client)",
        r"RequestMetrics|[(/]prometheus_client/|/metrics\.py",
    ),
    (
        "access log (RequestLogMiddleware, structlog, logging, JSON)",
        r"RequestLogMiddleware|[(/]structlog/|[(/]logging/|[(/]json/|/logs\.py|/masking\.py",
    ),
    ("request ID (asgi_correlation_id)", r"[(/]asgi_correlation_id/"),
    ("other template middleware (middleware.py)", r"_service/middleware\.py"),
    ("Sentry SDK", r"[(/]sentry_sdk/"),
    ("Redis client (redis-py)", r"[(/]redis/"),
    ("SQLAlchemy", r"[(/]sqlalchemy/"),
    ("database driver (asyncpg, aiosqlite, sqlite3)", r"[(/]asyncpg/|[(/]aiosqlite/|sqlite3"),
    ("pydantic (validation, serialization)", r"[(/]pydantic|pydantic_core"),
    ("the app's routes and dependencies", r"/items/|/db\.py|/health\.py|bare_app\.py"),
    ("FastAPI (routing, dependencies, its middleware)", r"[(/]fastapi/"),
    ("Starlette", r"[(/]starlette/"),
    ("uvicorn and httptools (HTTP, socket writes)", r"[(/]uvicorn/|httptools"),
    ("asyncio, uvloop and the event loop", r"[(/]asyncio/|uvloop|runners\.py"),
)
OTHER = "other (plain Python, C, the app's own code)"
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> list[str]:
    found = shutil.which("py-spy")
    if found:
        return [found]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import harness  # the suite's uv, not a pyenv shim

    return [harness.uv_executable(), "tool", "run", "--from", "py-spy", "py-spy"]


def record(pid: int, seconds: float, output: Path, rate: int = 250) -> None:
    args = [
        *py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
        "--format", "raw", "--output", str(output), "--nonblocking",
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if proc.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed:\n{proc.stdout}\n{proc.stderr}")


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def area_of(frame: str, areas: Sequence[tuple[str, str]] = AREAS) -> str | None:
    for name, pattern in areas:
        if re.search(pattern, frame):
            return name
    return None


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({file})"


def summarize(path: Path, top: int = 25, areas: Sequence[tuple[str, str]] = AREAS) -> str:
    stacks = read_stacks(path)
    total = sum(count for _, count in stacks)
    if not total:
        return "no samples"
    waiting = re.compile(r"select|epoll|poll \(|run_forever")
    idle = sum(count for frames, count in stacks if frames and waiting.search(frames[-1]))
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    for frames, count in stacks:
        for name in {short(f) for f in frames}:
            inclusive[name] += count
        own[short(frames[-1])] += count
        area = next((a for f in reversed(frames) if (a := area_of(f, areas))), OTHER)
        charged[area] += count
    lines = [f"{total} samples, {idle / total:.0%} of them waiting in the event loop (idle)"]
    lines.append("By area (each sample charged to its innermost frame that belongs to one):")
    for area, _ in (*areas, (OTHER, "")):
        if charged[area]:
            lines.append(f"  {charged[area] / total:6.1%}  {area}")
    lines.append(f"Top {top} functions by inclusive share:")
    lines += [f"  {count / total:6.1%}  {name}" for name, count in inclusive.most_common(top)]
    lines.append(f"Top {top} functions by self share:")
    lines += [f"  {count / total:6.1%}  {name}" for name, count in own.most_common(top)]
    return "\n".join(lines)


def import_times(python: Path, module: str, env: dict[str, str] | None = None, top: int = 15) -> str:
    """What importing `module` costs, by top-level package (python -X importtime), once."""
    proc = subprocess.run(
        [str(python), "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        return f"import {module} failed:\n{proc.stderr[-2000:]}"
    by_package: Counter[str] = Counter()
    total = 0
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        own_us, name = int(match.group(1)), match.group(4)
        by_package[name.split(".")[0]] += own_us  # self times add up without double counting
        total += own_us
    lines = [f"import {module}: {total / 1e6:.2f}s of imports (sum of self times, one run)"]
    lines += [f"  {us / 1e6:6.3f}s  {name}" for name, us in by_package.most_common(top)]
    return "\n".join(lines)


def profile_target(
    pid: int,
    port: int,
    endpoint: Any,
    args: Any,
    load: Callable[[int, Any, float, int], Any],
    work: Path,
    label: str = "server",
) -> None:
    """Warm up, then load the endpoint while py-spy samples the server; print the summary."""
    load(port, endpoint, args.warmup, args.connections)
    seconds = max(args.duration, 5)
    output = work / f"profile-{label}-{endpoint.name}.txt"
    result: dict[str, Any] = {}

    def run_load() -> None:
        result["load"] = load(port, endpoint, seconds + 1, args.connections)

    thread = threading.Thread(target=run_load)
    thread.start()
    record(pid, seconds, output)
    thread.join()
    sample = result.get("load")
    print(f"\nProfile of {label} (pid {pid}) on {endpoint.describe()}: {output}")
    if sample is not None:
        print(f"  under load: {sample.rps:,.0f} req/s (slowed by the sampling), p50 {sample.p50_ms:.2f} ms")
    print(summarize(output))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--imports":  # --imports PYTHON MODULE
        print(import_times(Path(sys.argv[2]), sys.argv[3]))
    else:
        for name in sys.argv[1:]:
            print(f"{name}:")
            print(summarize(Path(name)))
