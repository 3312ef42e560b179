"""The questions: what copier.yml rejects, what it derives, and what it records.

These tests only render (no virtual environment), so they are fast. A rejected answer
must name its question and say what rule it broke, and must write nothing.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
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


# Every rule a validator in copier.yml enforces, as (question, phrase of its message).
# Each has a test below that provokes it; test_every_validator_rule_has_a_test fails
# when copier.yml gains a rule that is not listed here.
RULES = {
    ("project_name", "must not be empty"),
    ("project_name", "must be at most 50 characters"),
    ("project_name", "must not contain quotes or backslashes"),
    ("project_slug", "must start with a lowercase letter"),
    ("project_slug", "must be at most 40 characters"),
    ("package_name", "must be a valid Python identifier"),
    ("package_name", "must be at most 40 characters"),
    ("package_name", "is a Python keyword"),
    ("package_name", "would shadow the standard library or a dependency"),
    ("description", "must not contain quotes or backslashes"),
    ("author_name", "must not be empty"),
    ("author_email", "must be an email address"),
}


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
# Validators: one rule per test
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   "])
def test_project_name_must_not_be_empty(tmp_path: Path, name: str) -> None:
    message = rejection(tmp_path, project_name=name)
    assert_names_question(message, "project_name")
    assert "must not be empty" in message


def test_project_name_must_be_at_most_50_characters(tmp_path: Path) -> None:
    message = rejection(tmp_path, project_name="x" * 51, project_slug="orders-service")
    assert_names_question(message, "project_name")
    assert "must be at most 50 characters" in message


@pytest.mark.parametrize("name", ['Orders "Prime" Service', "Orders\\Service"])
def test_project_name_must_not_contain_quotes_or_backslashes(tmp_path: Path, name: str) -> None:
    message = rejection(tmp_path, project_name=name)
    assert_names_question(message, "project_name")
    assert "must not contain quotes or backslashes" in message


@pytest.mark.parametrize(
    "slug",
    [
        "Orders-Service",
        "orders_service",
        "1orders",
        "-orders",
        "orders-",
        "orders--service",
        "orders service",
    ],
)
def test_project_slug_must_be_lowercase_words_joined_by_single_hyphens(tmp_path: Path, slug: str) -> None:
    message = rejection(tmp_path, project_slug=slug)
    assert_names_question(message, "project_slug")
    assert "must start with a lowercase letter" in message
    assert f'(got "{slug}")' in message


def test_project_slug_must_be_at_most_40_characters(tmp_path: Path) -> None:
    message = rejection(tmp_path, project_slug="o" * 41, package_name="orders_service")
    assert_names_question(message, "project_slug")
    assert "must be at most 40 characters" in message


@pytest.mark.parametrize(
    "package", ["orders-service", "Orders", "1orders", "orders.service", "orders service"]
)
def test_package_name_must_be_a_lowercase_identifier(tmp_path: Path, package: str) -> None:
    message = rejection(tmp_path, package_name=package)
    assert_names_question(message, "package_name")
    assert "must be a valid Python identifier" in message
    assert f'(got "{package}")' in message


def test_package_name_must_be_at_most_40_characters(tmp_path: Path) -> None:
    message = rejection(tmp_path, package_name="o" * 41)
    assert_names_question(message, "package_name")
    assert "must be at most 40 characters" in message


@pytest.mark.parametrize("keyword", ["class", "async", "import", "lambda"])
def test_package_name_must_not_be_a_python_keyword(tmp_path: Path, keyword: str) -> None:
    message = rejection(tmp_path, package_name=keyword)
    assert_names_question(message, "package_name")
    assert f'"{keyword}" is a Python keyword' in message


@pytest.mark.parametrize("module", ["json", "asyncio", "logging", "tomllib", "typing"])
def test_package_name_must_not_shadow_the_standard_library(tmp_path: Path, module: str) -> None:
    message = rejection(tmp_path, package_name=module)
    assert_names_question(message, "package_name")
    assert f'"{module}" would shadow the standard library or a dependency' in message


@pytest.mark.parametrize("dependency", ["fastapi", "sqlalchemy", "pydantic", "alembic", "uvicorn"])
def test_package_name_must_not_shadow_a_dependency(tmp_path: Path, dependency: str) -> None:
    message = rejection(tmp_path, package_name=dependency)
    assert_names_question(message, "package_name")
    assert f'"{dependency}" would shadow the standard library or a dependency' in message


@pytest.mark.parametrize("folder", ["src", "tests", "migrations", "docs"])
def test_package_name_must_not_shadow_a_project_folder(tmp_path: Path, folder: str) -> None:
    message = rejection(tmp_path, package_name=folder)
    assert_names_question(message, "package_name")
    assert f'"{folder}" would shadow' in message


def test_a_slug_that_derives_a_forbidden_package_name_is_rejected(tmp_path: Path) -> None:
    # The package name defaults from the slug, so the rule also protects the default.
    message = rejection(tmp_path, project_name="FastAPI")
    assert_names_question(message, "package_name")
    assert '"fastapi" would shadow' in message


@pytest.mark.parametrize("description", ['A "quoted" service', "A back\\slash"])
def test_description_must_not_contain_quotes_or_backslashes(tmp_path: Path, description: str) -> None:
    message = rejection(tmp_path, description=description)
    assert_names_question(message, "description")
    assert "must not contain quotes or backslashes" in message


@pytest.mark.parametrize("name", ["", "  "])
def test_author_name_must_not_be_empty(tmp_path: Path, name: str) -> None:
    message = rejection(tmp_path, author_name=name)
    assert_names_question(message, "author_name")
    assert "must not be empty" in message


@pytest.mark.parametrize(
    "email", ["team", "team@example", "@example.com", "team@@example.com", "te am@example.com"]
)
def test_author_email_must_be_an_email_address(tmp_path: Path, email: str) -> None:
    message = rejection(tmp_path, author_email=email)
    assert_names_question(message, "author_email")
    assert "must be an email address" in message
    assert f'(got "{email}")' in message


@pytest.mark.parametrize("version", ["3.10", "3.14", "3", "latest"])
def test_python_version_must_be_one_of_the_choices(tmp_path: Path, version: str) -> None:
    message = rejection(tmp_path, python_version=version)
    assert_names_question(message, "python_version")
    assert "Invalid choice" in message


def test_every_validator_rule_has_a_test() -> None:
    untested = []
    for question, spec in asked_questions().items():
        for message in validator_messages(question, str(spec.get("validator", ""))):
            if not any(q == question and phrase in message for q, phrase in RULES):
                untested.append(f"{question}: {message}")
    assert not untested, f"validator rules in copier.yml with no test in {__name__}: {untested}"


def test_every_rule_listed_here_exists_in_copier_yml() -> None:
    messages = {
        (question, message)
        for question, spec in asked_questions().items()
        for message in validator_messages(question, str(spec.get("validator", "")))
    }
    stale = [rule for rule in RULES if not any(q == rule[0] and rule[1] in m for q, m in messages)]
    assert not stale, f"rules no validator in copier.yml produces: {sorted(stale)}"


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
