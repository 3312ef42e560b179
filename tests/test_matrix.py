"""Every combination of the feature toggles renders a clean project that passes its own gates.

The toggles are the bool questions of copier.yml, found at collection time: N toggles
give 2**N combinations (one, named "defaults", while there are none). Each combination
is a single test with one render and one virtual environment, which keeps the matrix
affordable. Its steps run in order; a failed render or sync stops it, any other failed
step is recorded and the steps after it still run, and the failure names every failed
step with its output:

    render  copier copy with tasks, as a user would
    static  no *.jinja file, no leftover Jinja markers, no empty file, nothing of a
            feature that is off and something of each one that is on (tests/features.py)
    sync    uv sync
    ruff    uv run ruff check .
    format  uv run ruff format --check .
    mypy    uv run mypy     (with a mypy cache shared by the combinations of one worker)
    pytest  uv run pytest --cov   (plus the pytest_args of the toggles that are on,
            with TEST_DATABASE_URL / TEST_REDIS_URL passed through): the command of
            the generated CI, coverage gate included; a skipped test fails the step:
            the suite provides every service, so every test must run

The seconds of each step are printed in a table at the end of the run.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from features import FEATURES, Footprint
from harness import (
    ALLOWED_EMPTY_FILES,
    ALLOWED_TEMPLATE_MARKERS,
    ANSWERS_FILE,
    TIMING_PROPERTY,
    Combination,
    Steps,
    feature_combinations,
    feature_toggles,
    load_answers,
    project_env,
    project_files,
    read_text,
    render,
    skipped_tests,
)

COMBINATIONS = feature_combinations()
TEMPLATE_MARKER = re.compile(r"\{\{|\{%|\{#")


# ---------------------------------------------------------------------------
# The matrix itself
# ---------------------------------------------------------------------------


def test_the_matrix_has_one_combination_per_assignment_of_the_toggles() -> None:
    toggles = feature_toggles()
    assert len(COMBINATIONS) == 2 ** len(toggles)
    assert len({c.id for c in COMBINATIONS}) == len(COMBINATIONS), "combination ids must be unique"
    assert {tuple(sorted(c.data.items())) for c in COMBINATIONS} == {
        tuple(sorted(zip(toggles, bits, strict=True)))
        for bits in itertools.product((True, False), repeat=len(toggles))
    }


def test_every_feature_toggle_has_a_footprint_entry() -> None:
    missing = [t for t in feature_toggles() if t not in FEATURES]
    assert not missing, (
        f"copier.yml has feature toggles with no entry in tests/features.py: {missing}. "
        "Add what each one puts in a project, so the matrix can check it is absent when off."
    )


def test_footprint_table_names_only_existing_toggles() -> None:
    stale = sorted(set(FEATURES) - set(feature_toggles()))
    assert not stale, f"tests/features.py has entries for questions copier.yml does not have: {stale}"


# ---------------------------------------------------------------------------
# Static checks of a rendered project
# ---------------------------------------------------------------------------


def jinja_sources_left(project: Path) -> list[str]:
    return [str(p.relative_to(project)) for p in project_files(project) if p.name.endswith(".jinja")]


def leftover_template_markers(project: Path) -> list[str]:
    found = []
    for path in project_files(project):
        rel = path.relative_to(project).as_posix()
        text = read_text(path)
        if text is None:
            continue
        for pattern, allowed in ALLOWED_TEMPLATE_MARKERS:
            if fnmatch.fnmatch(rel, pattern):
                text = re.sub(allowed, "", text)
        for number, line in enumerate(text.splitlines(), start=1):
            if TEMPLATE_MARKER.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def empty_files(project: Path) -> list[str]:
    return [
        str(p.relative_to(project))
        for p in project_files(project)
        if p.name not in ALLOWED_EMPTY_FILES and not p.read_bytes().strip()
    ]


def footprint_in(project: Path, footprint: Footprint) -> list[str]:
    """Where a feature's footprint shows in a project: its paths and its strings."""
    answers = load_answers(project)
    fill = {"package": answers["package_name"], "slug": answers["project_slug"]}
    found = []
    for pattern in footprint.paths:
        found += [
            f"{match.relative_to(project)} exists" for match in sorted(project.glob(pattern.format(**fill)))
        ]
    for path in project_files(project):
        # The answers file records the toggle itself; .env is .env.example plus a random key.
        if path.name in {ANSWERS_FILE, ".env"}:
            continue
        text = read_text(path)
        for needle in footprint.strings:
            if text is not None and needle in text:
                found.append(f"{path.relative_to(project)} mentions {needle!r}")
    return found


def feature_footprint_problems(project: Path, combination: Combination) -> list[str]:
    """A feature that is off leaves no trace; one that is on shows at least part of its footprint."""
    problems = []
    for toggle, on in combination.toggles:
        # A toggle missing from the table fails test_every_feature_toggle_has_a_footprint_entry.
        footprint = FEATURES.get(toggle)
        if footprint is None or not (footprint.paths or footprint.strings):
            continue
        found = footprint_in(project, footprint)
        if not on:
            problems += [f"{toggle} is off but {where}" for where in found]
        elif not found:
            problems.append(
                f"{toggle} is on but nothing of its footprint in tests/features.py is in the project "
                f"({footprint}): the feature is missing, or the table is out of date"
            )
    return problems


def pytest_args(combination: Combination) -> list[str]:
    """Extra arguments for the generated tests: those of every toggle that is on."""
    return [arg for toggle in combination.enabled() for arg in FEATURES.get(toggle, Footprint()).pytest_args]


def static_problems(project: Path, combination: Combination) -> list[str]:
    problems = [f"template source left: {p}" for p in jinja_sources_left(project)]
    problems += [f"Jinja marker left: {p}" for p in leftover_template_markers(project)]
    problems += [f"empty file: {p}" for p in empty_files(project)]
    problems += feature_footprint_problems(project, combination)
    return problems


# ---------------------------------------------------------------------------
# One test per combination
# ---------------------------------------------------------------------------


@pytest.mark.matrix
@pytest.mark.parametrize("combination", COMBINATIONS, ids=[c.id for c in COMBINATIONS])
def test_combination_renders_cleanly_and_passes_its_quality_gates(
    combination: Combination,
    tmp_path: Path,
    service_urls: dict[str, str],
    mypy_cache_dir: Path | None,
    record_property: Callable[[str, object], None],
) -> None:
    steps = Steps(combination.id)
    project = tmp_path / "orders-service"
    try:
        with steps.step("render"):
            render(project, combination.data)

        with steps.step("static"):
            problems = static_problems(project, combination)
        if problems:
            steps.fail("static", "\n".join(problems))

        # The generated tests' temporary directories in this combination's own: pytest
        # ends each session by deleting all but the newest three of the numbered
        # directories in its root, which in the shared one (/tmp/pytest-of-<user>)
        # are other sessions', this suite's old runs with their virtual environments
        # among them (tens of seconds of unlinking for whichever combination finds them).
        temproot = tmp_path / "pytest-temproot"
        temproot.mkdir()
        env = project_env(project, {"PYTEST_DEBUG_TEMPROOT": str(temproot)}, service_urls=service_urls)
        steps.run("sync", ["uv", "sync"], project, env=env, stop=True)
        steps.run("ruff", ["uv", "run", "ruff", "check", "."], project, env=env)
        steps.run("format", ["uv", "run", "ruff", "format", "--check", "."], project, env=env)
        mypy_env = env if mypy_cache_dir is None else {**env, "MYPY_CACHE_DIR": str(mypy_cache_dir)}
        steps.run("mypy", ["uv", "run", "mypy"], project, env=mypy_env)
        report = tmp_path / "pytest.xml"
        tests = ["uv", "run", "pytest", "--cov", *pytest_args(combination), f"--junitxml={report}"]
        result = steps.run("pytest", tests, project, env=env, timeout=1200)
        if result.returncode == 0 and (skipped := skipped_tests(report)):
            steps.fail("pytest", "tests were skipped, which is no pass:\n" + "\n".join(skipped))
        steps.finish()
    finally:
        record_property(TIMING_PROPERTY, steps.as_property())
