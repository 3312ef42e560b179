"""The questions: what copier.yml rejects, what it derives, and what it records.

These tests only render (no virtual environment), so they are fast. A rejected answer
must name its question and say what rule it broke, and must write nothing.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from harness import (
    ANSWERS_FILE,
    BASE_DATA,
    DEFAULT_PACKAGE,
    DEFAULT_SLUG,
    asked_questions,
    load_answers,
    project_files,
    questions,
    read_text,
    render,
)

RenderProject = Callable[..., Path]


@dataclass(frozen=True)
class Rule:
    """A rule of a validator in copier.yml, and answers that break it.

    ``message`` is the phrase the refusal must hold ({answer} stands for the answer);
    ``quotes_answer``: the refusal also says which answer it got; ``also``: other
    answers the case needs, so that this rule is the one that fires.
    """

    question: str
    message: str
    bad: tuple[str, ...]
    quotes_answer: bool = False
    also: tuple[tuple[str, str], ...] = ()


# Every rule the validators of copier.yml enforce. test_every_validator_rule_is_in_the_table
# fails when copier.yml gains a rule that is not listed here.
RULES = (
    Rule("project_name", "must not be empty", ("", "   ")),
    Rule(
        "project_name",
        "must be at most 50 characters",
        ("x" * 51,),
        also=(("project_slug", "orders-service"),),
    ),
    Rule(
        "project_name",
        "must not contain quotes or backslashes",
        ('Orders "Prime" Service', "Orders\\Service"),
    ),
    Rule(
        "project_slug",
        "must start with a lowercase letter",
        (
            "Orders-Service",
            "orders_service",
            "1orders",
            "-orders",
            "orders-",
            "orders--service",
            "orders service",
        ),
        quotes_answer=True,
    ),
    Rule(
        "project_slug",
        "must be at most 40 characters",
        ("o" * 41,),
        also=(("package_name", "orders_service"),),
    ),
    Rule(
        "package_name",
        "must be a valid Python identifier",
        ("orders-service", "Orders", "1orders", "orders.service", "orders service"),
        quotes_answer=True,
    ),
    Rule("package_name", "must be at most 40 characters", ("o" * 41,)),
    Rule(
        "package_name",
        '"{answer}" is a Python keyword',
        ("class", "async", "import", "lambda"),
    ),
    Rule(
        "package_name",
        '"{answer}" would shadow the standard library or a dependency',
        (
            *("json", "asyncio", "logging", "tomllib", "typing"),  # the standard library
            *("fastapi", "sqlalchemy", "pydantic", "alembic", "uvicorn"),  # dependencies
            *("src", "tests", "migrations", "docs"),  # the project's folders
        ),
    ),
    Rule(
        "description",
        "must not contain quotes or backslashes",
        ('A "quoted" service', "A back\\slash"),
    ),
    Rule("author_name", "must not be empty", ("", "  ")),
    Rule(
        "author_email",
        "must be an email address",
        ("team", "team@example", "@example.com", "team@@example.com", "te am@example.com"),
        quotes_answer=True,
    ),
)
CASES = [
    pytest.param(rule, answer, id=f"{rule.question}: {rule.message.format(answer=answer)} ({answer!r})")
    for rule in RULES
    for answer in rule.bad
]


def validator_messages(question: str, validator: str) -> list[str]:
    """The messages a validator template can produce (text outside its {% %} tags)."""
    text = re.sub(r"\{\{.*?\}\}", "*", validator, flags=re.S)
    messages = []
    for chunk in re.split(r"\{%.*?%\}", text, flags=re.S):
        chunk = " ".join(chunk.split())
        if chunk.startswith(f"{question}:"):
            messages.append(chunk.removeprefix(f"{question}:").strip())
    return messages


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
def test_a_bad_answer_is_refused_with_its_rule(tmp_path: Path, rule: Rule, answer: str) -> None:
    message = rejection(tmp_path, **dict(rule.also), **{rule.question: answer})
    assert_names_question(message, rule.question)
    assert rule.message.format(answer=answer) in message
    if rule.quotes_answer:
        assert f'(got "{answer}")' in message


def test_a_slug_that_derives_a_forbidden_package_name_is_rejected(tmp_path: Path) -> None:
    # The package name defaults from the slug, so the rule also protects the default.
    message = rejection(tmp_path, project_name="FastAPI")
    assert_names_question(message, "package_name")
    assert '"fastapi" would shadow' in message


@pytest.mark.parametrize("version", ["3.10", "3.14", "3", "latest"])
def test_python_version_must_be_one_of_the_choices(tmp_path: Path, version: str) -> None:
    message = rejection(tmp_path, python_version=version)
    assert_names_question(message, "python_version")
    assert "Invalid choice" in message


def rule_phrase(rule: Rule) -> str:
    """The rule's message as validator_messages() gives it: values are shown as *."""
    return rule.message.replace("{answer}", "*")


def test_every_validator_rule_is_in_the_table() -> None:
    untested = []
    for question, spec in asked_questions().items():
        for message in validator_messages(question, str(spec.get("validator", ""))):
            if not any(r.question == question and rule_phrase(r) in message for r in RULES):
                untested.append(f"{question}: {message}")
    assert not untested, f"validator rules in copier.yml missing from RULES: {untested}"


def test_every_rule_of_the_table_exists_in_copier_yml() -> None:
    messages = {
        (question, message)
        for question, spec in asked_questions().items()
        for message in validator_messages(question, str(spec.get("validator", "")))
    }
    stale = [r for r in RULES if not any(q == r.question and rule_phrase(r) in m for q, m in messages)]
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
    ("project_name", "slug"),
    [
        ("Orders Service", "orders-service"),
        ("  My API v2!! ", "my-api-v2"),
        ("Billing_Engine", "billing-engine"),
        ("payments", "payments"),
    ],
)
def test_slug_defaults_from_the_project_name(
    render_project: RenderProject, project_name: str, slug: str
) -> None:
    answers = load_answers(render_project({"project_name": project_name}, skip_tasks=True))
    assert answers["project_slug"] == slug


@pytest.mark.parametrize(("slug", "package"), [("orders-service", "orders_service"), ("a-b-c2", "a_b_c2")])
def test_package_name_defaults_from_the_slug(render_project: RenderProject, slug: str, package: str) -> None:
    answers = load_answers(render_project({"project_slug": slug}, skip_tasks=True))
    assert answers["package_name"] == package


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
