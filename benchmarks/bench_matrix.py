"""How long `copier copy` takes, and the template's full combination matrix, and where it goes.

Run it from the template repository, with the suite's environment:

    uv run python benchmarks/bench_matrix.py                  # both parts, ~7 min
    uv run python benchmarks/bench_matrix.py --copy-only      # about a minute
    uv run python benchmarks/bench_matrix.py --matrix-only --json matrix.json
    uv run python benchmarks/bench_matrix.py --matrix-log run.log   # re-read a saved run

Part 1 times `copier copy` of one project, as a user runs it (the CLI, answers by
--defaults and --data, the .env task on), --copies times, and prints the median. To say
where the time goes it also times `copier --version` (interpreter and Copier start-up),
the copy with --skip-tasks (so the task's share is the difference), and a copy from a
snapshot of the template without .git (so the share of Copier's git work is the
difference); --profile-copy adds a py-spy profile of one copy.

Part 2 runs the suite's own matrix, `pytest -m matrix` (every combination of the feature
toggles: render, static checks, uv sync, ruff, ruff format, mypy, the generated tests),
with the suite's parallelism (pytest-xdist, one worker per core) and with
TEST_DATABASE_URL / TEST_REDIS_URL pointing at the local PostgreSQL and Redis as
.ci/run sets them. It reads the suite's timing table (seconds per step and combination)
from the output and prints it grouped as render / sync / lint / types / tests, the wall
time against the target, the sum of each step, and what each feature adds to a
combination (mean total with the toggle on minus with it off).

It needs what the suite needs (README.md: Prerequisites), and only reads the suite; the
matrix's databases and Redis numbers are the suite's own (template_suite_gwN, 1 and 2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402  (tests/harness.py)

COPY_TARGET_SECONDS = 2.0
MATRIX_TARGET_SECONDS = 15 * 60
GROUPS = {
    "render": ("render", "static"),
    "sync": ("sync",),
    "lint": ("ruff", "format"),
    "types": ("mypy",),
    "tests": ("pytest",),
}
TEST_URLS = {
    "TEST_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    "TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------
# Part 1: copier copy
# ---------------------------------------------------------------------------


def copier_executable() -> str:
    own = Path(sys.executable).parent / "copier"
    if own.exists():
        return str(own)
    found = shutil.which("copier")
    if not found:
        raise SystemExit("copier not found: run this with `uv run` in the template repository")
    return found


def copy_command(source: Path, dst: Path, *, skip_tasks: bool = False, vcs_ref: bool = True) -> list[str]:
    args = [copier_executable(), "copy", "--trust", "--defaults", "--quiet"]
    args += ["--data", f"project_name={harness.BASE_DATA['project_name']}"]
    if vcs_ref:
        args += ["--vcs-ref", "HEAD"]  # The working tree, uncommitted changes included, as the suite.
    if skip_tasks:
        args.append("--skip-tasks")
    return [*args, str(source), str(dst)]


def timed(args: list[str], cwd: Path, pycache: Path | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    if pycache is not None:
        # Bytecode cached as on a usual machine, in a folder of our own (the suite's
        # environment is left as it is).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    return seconds


def snapshot_without_git(dst: Path) -> Path:
    """The template as Copier reads it (copier.yml, template/, hooks/), with no .git."""
    dst.mkdir(parents=True)
    shutil.copy2(ROOT / "copier.yml", dst / "copier.yml")
    ignore = shutil.ignore_patterns(".ruff_cache", "__pycache__", ".mypy_cache")
    shutil.copytree(ROOT / "template", dst / "template", ignore=ignore)
    shutil.copytree(ROOT / "hooks", dst / "hooks", ignore=ignore)
    return dst


def bench_copy(copies: int, profile: bool) -> dict[str, Any]:
    say(f"copier copy, {copies} times each (median [min, max]):")
    results: dict[str, list[float]] = {
        "version": [],
        "copy": [],
        "skip_tasks": [],
        "no_git": [],
        "cached": [],
    }
    no_bytecode = os.environ.get("PYTHONDONTWRITEBYTECODE")
    with tempfile.TemporaryDirectory(prefix="cfs-copy-") as tmp:
        work = Path(tmp)
        plain = snapshot_without_git(work / "template-snapshot")
        pycache = work / "pycache"
        timed(copy_command(ROOT, work / "fill-pycache"), work, pycache)  # Fills the cache.
        for n in range(copies):
            results["cached"].append(timed(copy_command(ROOT, work / f"cached-{n}"), work, pycache))
            results["version"].append(timed([copier_executable(), "--version"], work))
            results["copy"].append(timed(copy_command(ROOT, work / f"copy-{n}"), work))
            results["skip_tasks"].append(timed(copy_command(ROOT, work / f"skip-{n}", skip_tasks=True), work))
            results["no_git"].append(timed(copy_command(plain, work / f"plain-{n}", vcs_ref=False), work))
        rendered = sum(1 for p in (work / "copy-0").rglob("*") if p.is_file())
        profile_text = profile_copy(work) if profile else None

    labels = {
        "copy": "copier copy --trust (what a user runs)",
        "skip_tasks": "the same with --skip-tasks",
        "no_git": "the same from a snapshot without .git",
        "version": "copier --version (start-up only)",
        "cached": "copier copy --trust, bytecode cached",
    }
    for key, label in labels.items():
        values = results[key]
        say(f"  {label:<40} {median(values):5.2f}s [{min(values):.2f}, {max(values):.2f}]")
    copy, skip, no_git, start = (median(results[k]) for k in ("copy", "skip_tasks", "no_git", "version"))
    say(f"  ({rendered} files per project)")
    say("Where the time of one copy goes (differences of medians):")
    say(f"  interpreter and Copier start-up            {start:5.2f}s")
    say(f"  the .env task (hooks/write_env.py)         {copy - skip:5.2f}s")
    say(f"  Copier's git work on the template repo     {copy - no_git:5.2f}s")
    say(f"  questions, rendering and writing files     {max(0.0, no_git - start):5.2f}s")
    cached = median(results["cached"])
    if no_bytecode:
        say(
            f"  PYTHONDONTWRITEBYTECODE={no_bytecode} here: every run above compiles Copier's modules"
            f" from source; with bytecode cached (PYTHONPYCACHEPREFIX) a copy takes {cached:.2f}s"
        )
    verdict = "met" if copy <= COPY_TARGET_SECONDS else "MISSED"
    cached_verdict = "met" if cached <= COPY_TARGET_SECONDS else "MISSED"
    say(
        f"Target: copier copy <= {COPY_TARGET_SECONDS:g} s: [{verdict}] {copy:.2f}s"
        f" ({cached_verdict} with bytecode cached: {cached:.2f}s)"
    )
    if profile_text:
        say(profile_text)
    return {
        "runs": {k: [round(v, 3) for v in vs] for k, vs in results.items()},
        "median": {k: median(v) for k, v in results.items()},
        "files": rendered,
        "met": copy <= COPY_TARGET_SECONDS,
    }


COPY_AREAS: tuple[tuple[str, str], ...] = (
    ("git (subprocesses: clone, status, ...)", r"/plumbum/|subprocess\.py|vcs\.py"),
    ("Jinja2 (compile and render)", r"/jinja2/"),
    ("questions and answers (questionary, pydantic)", r"user_data\.py|/questionary/|/pydantic"),
    ("copying files and writing", r"shutil\.py|pathlib|_copy_file|_render_file"),
    ("imports", r"<frozen importlib|_find_and_load"),
)


def profile_copy(work: Path) -> str:
    """A py-spy profile of one copy (py-spy from PyPI through `uv tool run`)."""
    from profile_service import py_spy, summarize

    output = work / "copy-profile.txt"
    args = [
        *py_spy(),
        "record",
        "--rate",
        "500",
        "--format",
        "raw",
        "--output",
        str(output),
        "--subprocesses",
    ]
    args += ["--", *copy_command(ROOT, work / "profiled")]
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 or not output.exists():
        return f"py-spy failed:\n{proc.stdout}\n{proc.stderr}"
    return (
        "Profile of one copy (py-spy, samples of the Copier process and its Python children):\n"
        + summarize(output, top=20, areas=COPY_AREAS)
    )


# ---------------------------------------------------------------------------
# Part 2: the matrix
# ---------------------------------------------------------------------------

ROW = re.compile(r"^(?P<label>[a-z0-9-]+)\s+(?P<cells>(?:!?[0-9.]+|-)(?:\s+(?:!?[0-9.]+|-))+)\s*$")


def parse_timing_table(output: str) -> list[dict[str, Any]]:
    """The rows of the suite's table: combination, then seconds per step and the total."""
    _, marker, table = output.partition("template matrix: seconds per step")
    if not marker:
        return []
    lines = table.splitlines()[1:]
    header = next((line.split() for line in lines if line.startswith("combination")), None)
    if header is None:
        return []
    steps = header[1:]
    rows = []
    for line in lines:
        match = ROW.match(line)
        if not match:
            continue
        cells = match.group("cells").split()
        if len(cells) != len(steps):
            continue
        seconds: dict[str, float] = {}
        failed = []
        for step, cell in zip(steps, cells, strict=True):
            if cell == "-":
                continue
            if cell.startswith("!"):
                failed.append(step)
            seconds[step] = float(cell.lstrip("!"))
        rows.append({"label": match.group("label"), "seconds": seconds, "failed": failed})
    return rows


def grouped(seconds: dict[str, float]) -> dict[str, float]:
    return {group: sum(seconds.get(step, 0.0) for step in steps) for group, steps in GROUPS.items()}


def run_matrix(log_path: Path) -> tuple[str, float, int]:
    env = dict(os.environ)
    for key, value in TEST_URLS.items():
        env.setdefault(key, value)
    args = [sys.executable, "-m", "pytest", "-m", "matrix", "-p", "no:cacheprovider"]
    say(f"$ {' '.join(args[1:])}   (TEST_DATABASE_URL, TEST_REDIS_URL set; output in {log_path})")
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.monotonic() - started
    return log_path.read_text(), wall, proc.returncode


def report_matrix(output: str, wall: float | None, returncode: int | None) -> dict[str, Any]:
    rows = parse_timing_table(output)
    if not rows:
        raise SystemExit("no timing table in the pytest output (did the matrix run?)")
    outcome = next((line.strip("= ") for line in reversed(output.splitlines()) if " in " in line), "")
    workers = re.search(r"created: (\d+)/\d+ workers", output)
    n_workers = int(workers.group(1)) if workers else os.cpu_count() or 1
    toggles = harness.feature_toggles()

    say()
    say(f"Matrix: {len(rows)} combinations on {n_workers} xdist workers; pytest: {outcome}")
    width = max(len(r["label"]) for r in rows)
    say(f"  {'combination':<{width}} " + " ".join(f"{g:>7}" for g in (*GROUPS, "total")) + "  failed")
    for row in sorted(rows, key=lambda r: -sum(r["seconds"].values())):
        groups = grouped(row["seconds"])
        cells = " ".join(f"{v:7.1f}" for v in groups.values())
        failed = ",".join(row["failed"])
        say(f"  {row['label']:<{width}} {cells} {sum(groups.values()):7.1f}  {failed}")

    totals = {group: sum(grouped(r["seconds"])[group] for r in rows) for group in GROUPS}
    busy = sum(totals.values())
    say()
    say("Where the time goes: each step summed over the combinations (worker-seconds):")
    for group, value in sorted(totals.items(), key=lambda kv: -kv[1]):
        steps = "+".join(GROUPS[group])
        say(f"  {group:<7} ({steps:<13}) {value:8.1f}s  {value / busy:6.1%}")
    say(
        f"  {'all':<23} {busy:8.1f}s  = {busy / n_workers / 60:.1f} min on {n_workers} workers, "
        "if perfectly packed"
    )
    per_step: dict[str, float] = {}
    for row in rows:
        for step, value in row["seconds"].items():
            if step != "total":
                per_step[step] = per_step.get(step, 0.0) + value
    say("  by step: " + ", ".join(f"{s} {v:.0f}s" for s, v in per_step.items()))

    say()
    say("What each feature adds to a combination (mean total with it on minus off, seconds):")
    by_label = {r["label"]: r for r in rows}
    feature_cost: dict[str, dict[str, float]] = {}
    for toggle in toggles:
        on_rows, off_rows = [], []
        for combination in harness.feature_combinations():
            row = by_label.get(combination.id)
            if row is None:
                continue
            (on_rows if combination.data[toggle] else off_rows).append(grouped(row["seconds"]))
        if not on_rows or not off_rows:
            continue
        cost = {
            group: statistics.mean(r[group] for r in on_rows) - statistics.mean(r[group] for r in off_rows)
            for group in GROUPS
        }
        feature_cost[toggle] = cost
        cells = ", ".join(f"{g} {v:+.1f}" for g, v in cost.items())
        say(f"  {toggle:<24} {sum(cost.values()):+6.1f}s  ({cells})")

    result: dict[str, Any] = {
        "combinations": rows,
        "workers": n_workers,
        "group_totals": totals,
        "step_totals": per_step,
        "feature_cost": feature_cost,
        "pytest": outcome,
    }
    if wall is not None:
        say()
        say(f"Wall time of the matrix: {wall / 60:.1f} min (pytest exit {returncode}); packing efficiency "
            f"{busy / n_workers / wall:.0%} (worker-seconds / workers / wall)")  # fmt: skip
        verdict = "met" if wall <= MATRIX_TARGET_SECONDS else "MISSED"
        say(f"Target: full matrix <= 15 min on {n_workers} workers: [{verdict}] {wall / 60:.1f} min")
        result |= {"wall_seconds": wall, "returncode": returncode, "met": wall <= MATRIX_TARGET_SECONDS}
    return result


SLOW_DATABASE = "cfs_bench_matrix"
SLOW_REDIS_DB = 14


def slowest_generated_tests(count: int) -> dict[str, Any]:
    """The slowest tests of the all-features project (pytest --durations), run once.

    The matrix spends most of its time in the generated tests; this names them. It uses
    a PostgreSQL database and a Redis number of its own (refusing a Redis number that
    holds keys), and drops the database and deletes its Redis keys after.
    """
    from bench_service import psql, redis_command

    from features import FEATURES

    if redis_command("DBSIZE", db=SLOW_REDIS_DB):
        raise SystemExit(f"Redis database {SLOW_REDIS_DB} is not empty; not using it")
    combination = {toggle: True for toggle in harness.feature_toggles()}
    extra_args = [arg for toggle in combination for arg in FEATURES[toggle].pytest_args]
    urls = {
        "TEST_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{SLOW_DATABASE}",
        "TEST_REDIS_URL": f"redis://127.0.0.1:6379/{SLOW_REDIS_DB}",
    }
    say()
    say(f"The slowest generated tests, all features on (pytest --durations={count}), run alone:")
    with tempfile.TemporaryDirectory(prefix="cfs-slowest-") as tmp:
        project = harness.render(Path(tmp) / "orders-service", combination)
        psql(f'DROP DATABASE IF EXISTS "{SLOW_DATABASE}" WITH (FORCE)')
        psql(f'CREATE DATABASE "{SLOW_DATABASE}"')
        try:
            env = harness.project_env(project, service_urls=urls)
            harness.run(["uv", "sync"], project, env=env, check=False)
            args = [
                "uv",
                "run",
                "pytest",
                *extra_args,
                f"--durations={count}",
                "-q",
                "-p",
                "no:cacheprovider",
            ]
            result = harness.run(args, project, env=env, check=False, timeout=1200)
        finally:
            psql(f'DROP DATABASE IF EXISTS "{SLOW_DATABASE}" WITH (FORCE)')
            cursor = "0"
            while True:
                cursor, keys = redis_command("SCAN", cursor, "COUNT", 1000, db=SLOW_REDIS_DB)
                if keys:
                    redis_command("DEL", *keys, db=SLOW_REDIS_DB)
                if cursor == "0":
                    break
    durations = [
        {"seconds": float(m.group(1)), "phase": m.group(2), "test": m.group(3)}
        for m in re.finditer(r"^([0-9.]+)s (call|setup|teardown)\s+(\S+)", result.output, re.M)
    ]
    outcome = next((line.strip("= ") for line in reversed(result.output.splitlines()) if " in " in line), "")
    say(f"  pytest: {outcome} (wall {result.seconds:.1f}s)")
    for row in durations:
        say(f"  {row['seconds']:6.2f}s {row['phase']:<8} {row['test']}")
    listed = sum(row["seconds"] for row in durations)
    say(f"  these {len(durations)} account for {listed:.1f}s of {result.seconds:.1f}s")
    return {"outcome": outcome, "seconds": result.seconds, "durations": durations}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=5, help="copies per variant; medians (5)")
    parser.add_argument("--copy-only", action="store_true")
    parser.add_argument("--matrix-only", action="store_true")
    parser.add_argument("--profile-copy", action="store_true", help="add a py-spy profile of one copy")
    parser.add_argument("--matrix-log", type=Path, help="re-read this saved pytest output; run nothing")
    parser.add_argument("--log", type=Path, default=Path("/tmp/cfs-bench-matrix.log"), help="pytest output")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--slowest", type=int, default=15, help="then list the N slowest generated tests, all on (15; 0: no)"
    )
    args = parser.parse_args(argv)

    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.matrix_log:
        report["matrix"] = report_matrix(args.matrix_log.read_text(), None, None)
    else:
        if not args.matrix_only:
            report["copy"] = bench_copy(args.copies, args.profile_copy)
        if not args.copy_only:
            say()
            output, wall, returncode = run_matrix(args.log)
            report["matrix"] = report_matrix(output, wall, returncode)
            if args.slowest:
                report["slowest"] = slowest_generated_tests(args.slowest)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
