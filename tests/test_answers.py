"""The questions: what copier.yml rejects, what it derives, and what it records.

These tests only render (no virtual environment), so they are fast. A rejected answer
must name its question and say what rule it broke, and must write nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from harness import (
    ANSWERS_FILE,
    BASE_DATA,
    DEFAULT_PACKAGE,
    DEFAULT_SLUG,
    ROOT,
    asked_questions,
    feature_toggles,
    load_answers,
    project_files,
    questions,
    read_text,
    render,
    run,
)

RenderProject = Callable[..., Path]


# How a refusal shows the answer it refuses, after the rule.
QUOTED = ': "{answer}"'
LENGTH = ", not {length}"


@dataclass(frozen=True)
class Rule:
    """A rule of a validator in copier.yml, and answers that break it.

    A refusal is the rule (``message``, at most 80 characters) followed by the answer,
    as ``shows`` says (quoted, its length, or nothing). ``also``: other answers the
    case needs, so that this rule is the one that fires.
    """

    question: str
    message: str
    bad: tuple[str, ...]
    shows: str = QUOTED
    also: tuple[tuple[str, str], ...] = ()

    def refusal(self, answer: str) -> str:
        return self.message + self.shows.format(answer=answer, length=len(answer))


# Every rule the validators of copier.yml enforce. test_every_validator_rule_is_in_the_table
# fails when copier.yml gains a rule that is not listed here.
RULES = (
    Rule("project_name", "must not be empty", ("", "   "), shows=""),
    Rule(
        "project_name",
        "must be at most 50 characters",
        ("x" * 51,),
        shows=LENGTH,
        also=(("project_slug", "orders-service"),),
    ),
    Rule(
        "project_name",
        "must not contain quotes or backslashes",
        ('Orders "Prime" Service', "Orders\\Service"),
    ),
    Rule(
        "project_slug",
        "must be lowercase letters, digits and single hyphens, starting with a letter",
        (
            "Orders-Service",
            "orders_service",
            "1orders",
            "-orders",
            "orders-",
            "orders--service",
            "orders service",
        ),
    ),
    Rule(
        "project_slug",
        "must be at most 40 characters",
        ("o" * 41,),
        shows=LENGTH,
        also=(("package_name", "orders_service"),),
    ),
    Rule(
        "project_slug",
        "must not be the name of one of the service's dependencies",
        ("fastapi", "sentry-sdk", "python-dotenv", "redis"),
        also=(("package_name", "orders_service"),),
    ),
    Rule(
        "package_name",
        "must be lowercase letters, digits and underscores, not starting with a digit",
        ("orders-service", "Orders", "1orders", "orders.service", "orders service"),
    ),
    Rule("package_name", "must be at most 40 characters", ("o" * 41,), shows=LENGTH),
    Rule("package_name", "must not be a Python keyword", ("class", "async", "import", "lambda")),
    Rule(
        "package_name",
        "must not shadow a module the service imports or a folder of the project",
        (
            *("json", "asyncio", "logging", "tomllib", "typing"),  # the standard library
            *("fastapi", "sqlalchemy", "pydantic", "alembic", "uvicorn"),  # dependencies
            *("dotenv", "mako", "yaml", "h11", "greenlet"),  # theirs, and the dev tools'
            *("locust", "gevent", "coverage"),  # the load and dev groups' tools
            *("src", "tests", "migrations", "docs", "loadtests", "deploy"),  # its folders
        ),
    ),
    Rule(
        "description",
        "must not contain quotes or backslashes",
        ('A "quoted" service', "A back\\slash"),
    ),
    Rule("author_name", "must not be empty", ("", "  "), shows=""),
    Rule(
        "author_email",
        "must be an email address like name@example.com",
        ("team", "team@example", "@example.com", "team@@example.com", "te am@example.com"),
    ),
)
CASES = [
    pytest.param(rule, answer, id=f"{rule.question}: {rule.refusal(answer)}")
    for rule in RULES
    for answer in rule.bad
]


def validator_messages(validator: str) -> list[str]:
    """The messages a validator template can produce (its text outside {% %} tags)."""
    text = re.sub(r"\{\{.*?\}\}", "*", validator, flags=re.S)
    chunks = (" ".join(chunk.split()) for chunk in re.split(r"\{%.*?%\}", text, flags=re.S))
    return [chunk for chunk in chunks if chunk]


def rejection(tmp_path: Path, **answers: Any) -> str:
    """Render with these answers, expect copier to refuse, return its message."""
    dst = tmp_path / "rejected"
    with pytest.raises(ValueError) as excinfo:
        render(dst, answers, skip_tasks=True)
    assert not dst.exists() or not any(dst.iterdir()), "a rejected answer must write nothing"
    return str(excinfo.value)


def assert_names_question(message: str, question: str) -> None:
    assert f"question '{question}'" in message or f"for '{question}'" in message, message


# ---------------------------------------------------------------------------
# Validators: every rule of the table, with each of its bad answers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "answer"), CASES)
def test_a_bad_answer_is_refused_with_its_rule_then_itself(tmp_path: Path, rule: Rule, answer: str) -> None:
    message = rejection(tmp_path, **dict(rule.also), **{rule.question: answer})
    assert message == f"Validation error for question '{rule.question}': {rule.refusal(answer)}"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: f"{rule.question}: {rule.message}")
def test_a_rule_fits_on_an_80_column_line(rule: Rule) -> None:
    assert len(rule.message) <= 80


@pytest.mark.parametrize("version", ["3.10", "3.14", "3", "latest"])
def test_python_version_must_be_one_of_the_choices(tmp_path: Path, version: str) -> None:
    message = rejection(tmp_path, python_version=version)
    assert_names_question(message, "python_version")
    assert "Invalid choice" in message


def test_every_validator_rule_is_in_the_table() -> None:
    untested = []
    for question, spec in asked_questions().items():
        for message in validator_messages(str(spec.get("validator", ""))):
            if not any(r.question == question and message.startswith(r.message) for r in RULES):
                untested.append(f"{question}: {message}")
    assert not untested, f"validator rules in copier.yml missing from RULES: {untested}"


def test_every_rule_of_the_table_exists_in_copier_yml() -> None:
    messages = {
        (question, message)
        for question, spec in asked_questions().items()
        for message in validator_messages(str(spec.get("validator", "")))
    }
    stale = [r for r in RULES if not any(q == r.question and m.startswith(r.message) for q, m in messages)]
    assert not stale, f"rules no validator in copier.yml produces: {stale}"


# ---------------------------------------------------------------------------
# Accepted answers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_every_python_version_choice_is_accepted(render_project: RenderProject, version: str) -> None:
    project = render_project({"python_version": version}, skip_tasks=True)
    assert load_answers(project)["python_version"] == version


@pytest.mark.parametrize("package", ["orders_core", "_private_orders", "shop2"])
def test_a_lowercase_identifier_is_accepted_as_package_name(
    render_project: RenderProject, package: str
) -> None:
    project = render_project({"package_name": package}, skip_tasks=True)
    assert load_answers(project)["package_name"] == package


# ---------------------------------------------------------------------------
# Derived defaults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("project_name", "slug", "package"),
    [
        ("Orders Service", "orders-service", "orders_service"),
        ("  My API v2!! ", "my-api-v2", "my_api_v2"),
        ("Billing_Engine", "billing-engine", "billing_engine"),
        ("payments", "payments", "payments"),
        # Letters outside ASCII are spelt in it; others are dropped.
        ("Café Münster", "cafe-munster", "cafe_munster"),
        ("Straße & Øresund", "strasse-oresund", "strasse_oresund"),
        ("東京 Orders", "orders", "orders"),
        # A slug starts with a letter: leading digits go; without letters, "service".
        ("2048 Game", "game", "game"),
        ("1st Choice", "st-choice", "st_choice"),
        ("!!!", "service", "service"),
        ("42", "service", "service"),
        # A name taken by a dependency, a module or a keyword gets "-service".
        ("FastAPI", "fastapi-service", "fastapi_service"),
        ("Redis", "redis-service", "redis_service"),
        ("JSON", "json-service", "json_service"),
        ("Async", "async-service", "async_service"),
        ("Tests", "tests-service", "tests_service"),
        # At most 40 characters, without a trailing hyphen.
        (
            "A Rather Long Service Name For Orders Of All Kinds",
            "a-rather-long-service-name-for-orders-of",
            "a_rather_long_service_name_for_orders_of",
        ),
    ],
)
def test_slug_and_package_default_from_the_project_name(
    render_project: RenderProject, project_name: str, slug: str, package: str
) -> None:
    answers = load_answers(render_project({"project_name": project_name}, skip_tasks=True))
    assert (answers["project_slug"], answers["package_name"]) == (slug, package)


@pytest.mark.parametrize(
    ("slug", "package"),
    [("orders-service", "orders_service"), ("a-b-c2", "a_b_c2"), ("json", "json_service")],
)
def test_package_name_defaults_from_the_slug(render_project: RenderProject, slug: str, package: str) -> None:
    answers = load_answers(render_project({"project_slug": slug}, skip_tasks=True))
    assert answers["package_name"] == package


@pytest.mark.parametrize("project_name", ["2048 Game", "!!!", "Café Münster", "FastAPI"])
def test_the_command_line_takes_any_name_with_the_defaults(tmp_path: Path, project_name: str) -> None:
    """`copier copy --defaults` with only a name: a service, never a traceback."""
    copier = str(Path(sys.executable).parent / "copier")
    options = ["--trust", "--defaults", "--vcs-ref", "HEAD", "--skip-tasks"]
    done = subprocess.run(
        [
            copier,
            "copy",
            *options,
            "--data",
            f"project_name={project_name}",
            str(ROOT),
            str(tmp_path / "service"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "service" / "pyproject.toml").is_file()


def test_description_defaults_from_the_project_name(render_project: RenderProject) -> None:
    answers = load_answers(render_project(skip_tasks=True))
    assert answers["description"] == "Orders Service: a FastAPI service"


def test_other_defaults(render_project: RenderProject) -> None:
    answers = load_answers(render_project(skip_tasks=True))
    assert answers["author_name"] == "Your Team"
    assert answers["author_email"] == "team@example.com"
    assert answers["python_version"] == "3.13"


# ---------------------------------------------------------------------------
# The answers file
# ---------------------------------------------------------------------------


def test_answers_file_records_every_asked_question(render_project: RenderProject) -> None:
    answers = load_answers(render_project(skip_tasks=True))
    assert set(asked_questions()) <= set(answers)
    assert answers["project_name"] == BASE_DATA["project_name"]
    assert answers["project_slug"] == DEFAULT_SLUG
    assert answers["package_name"] == DEFAULT_PACKAGE


def test_answers_file_records_the_template_source_for_updates(render_project: RenderProject) -> None:
    answers = load_answers(render_project(skip_tasks=True))
    assert answers.get("_src_path"), "copier update needs _src_path"
    assert answers.get("_commit"), "copier update needs _commit"


def test_answers_file_does_not_store_computed_values(render_project: RenderProject) -> None:
    answers = load_answers(render_project(skip_tasks=True))
    computed = set(questions()) - set(asked_questions())
    assert computed, "copier.yml is expected to have computed (when: false) values"
    assert not computed & set(answers), f"computed values stored: {sorted(computed & set(answers))}"


def test_answers_file_has_no_secret_settings(render_project: RenderProject) -> None:
    answers = load_answers(render_project())
    for key in answers:
        for word in ("SECRET", "PASSWORD", "TOKEN", "DSN", "API_KEY"):
            assert word not in key.upper(), f"{ANSWERS_FILE} stores {key!r}"


# ---------------------------------------------------------------------------
# Answers flow into the project
# ---------------------------------------------------------------------------


def test_package_directory_is_named_after_package_name(render_project: RenderProject) -> None:
    project = render_project({"package_name": "orders_core"}, skip_tasks=True)
    assert (project / "src" / "orders_core" / "__init__.py").is_file()
    assert not (project / "src" / DEFAULT_PACKAGE).exists()
    mentions = [
        str(p.relative_to(project))
        for p in project_files(project)
        if p.name != ANSWERS_FILE and DEFAULT_PACKAGE in (read_text(p) or "")
    ]
    assert not mentions, f"files still name the default package {DEFAULT_PACKAGE}: {mentions}"


def test_console_script_is_named_after_the_slug(render_project: RenderProject) -> None:
    project = render_project({"project_name": "Billing Engine"}, skip_tasks=True)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "billing-engine"
    assert "billing-engine" in pyproject["project"]["scripts"]
    assert pyproject["project"]["scripts"]["billing-engine"].startswith("billing_engine")


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_generated_project_requires_the_chosen_python(render_project: RenderProject, version: str) -> None:
    project = render_project({"python_version": version}, skip_tasks=True)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    major, minor = (int(part) for part in version.split("."))
    assert f"{major}.{minor}.0" in requires
    assert f"{major}.{minor - 1}.99" not in requires


# ---------------------------------------------------------------------------
# The reserved names, against the environments a service really has
# ---------------------------------------------------------------------------

# Prints the top-level modules the interpreter can import (the standard library's,
# builtin, private and test modules included) and the distributions installed.
ENVIRONMENT_NAMES = """
import importlib.metadata, json, os, pkgutil, re, sys, sysconfig
modules = set(sys.stdlib_module_names) | {m.name for m in pkgutil.iter_modules()}
dynload = os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload")
modules |= {m.name for m in pkgutil.iter_modules([sysconfig.get_path("stdlib"), dynload])}
distributions = set()
for dist in importlib.metadata.distributions():
    distributions.add(re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower())
    for file in dist.files or ():
        top = file.parts[0]
        if len(file.parts) > 1 and not top.endswith((".dist-info", ".data")):
            modules.add(top)
        elif len(file.parts) == 1 and re.search(r"[.](py|so|pyd)$", top):
            modules.add(top.split(".")[0])
print(json.dumps({"modules": sorted(modules), "distributions": sorted(distributions)}))
"""
PACKAGE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def computed(name: str) -> list[str]:
    """A computed list of copier.yml (a YAML list in a string)."""
    values: list[str] = yaml.safe_load(questions()[name]["default"])
    return values


def environment_names(project: Path) -> dict[str, list[str]]:
    # Every dependency group: the load tests' Locust (`--group load`) too.
    run(["uv", "sync", "--all-groups"], project, what="uv sync --all-groups")
    python = project / ".venv" / "bin" / "python"
    result = run([str(python), "-I", "-c", ENVIRONMENT_NAMES], project, what="listing the modules")
    names: dict[str, list[str]] = json.loads(result.output.strip().splitlines()[-1])
    return names


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_the_reserved_names_cover_the_environment_of_every_feature(
    render_project: RenderProject, version: str
) -> None:
    toggles = dict.fromkeys(feature_toggles(), True)
    project = render_project({**toggles, "python_version": version}, skip_tasks=True)
    names = environment_names(project)
    own_package, own_distribution = DEFAULT_PACKAGE, DEFAULT_SLUG
    modules = {m for m in names["modules"] if PACKAGE_NAME.fullmatch(m) and m != own_package}
    modules -= {m for m in modules if m.startswith("__editable__")}  # uv's import hook
    reserved = set(computed("reserved_package_names"))
    assert sorted(modules - reserved) == [], "add these to reserved_package_names in copier.yml"
    distributions = set(names["distributions"]) - {own_distribution}
    reserved_distributions = set(computed("reserved_distribution_names"))
    assert sorted(distributions - reserved_distributions) == [], (
        "add these to reserved_distribution_names in copier.yml"
    )
