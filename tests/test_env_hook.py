"""The copy task (hooks/write_env.py): a private `.env` with a fresh SECRET_KEY and
POSTGRES_PASSWORD.

After `copier copy` (tasks on) the project has a gitignored `.env` made from its
`.env.example`, with a random SECRET_KEY and a random POSTGRES_PASSWORD (compose.yaml's
database), each of at least 32 characters, that no other copy shares and that are
recorded nowhere else. With tasks skipped there is no `.env`, and the
project still works on its defaults.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import (
    ANSWERS_FILE,
    DEFAULT_SLUG,
    env_file_keys,
    parse_env_file,
    project_env,
    project_files,
    read_text,
    render,
    run,
)

RenderProject = Callable[..., Path]


# What the task generates for each copy.
# (AUTH_DEVELOPMENT_KEY: the default answers include authentication.)
GENERATED = pytest.mark.parametrize("name", ["SECRET_KEY", "POSTGRES_PASSWORD", "AUTH_DEVELOPMENT_KEY"])


def generated(project: Path, name: str) -> str:
    values = parse_env_file(project / ".env")
    assert name in values, f".env has no {name} assignment"
    return values[name]


def test_copy_writes_an_env_file(render_project: RenderProject) -> None:
    assert (render_project() / ".env").is_file()


def test_env_file_is_readable_by_its_owner_only(render_project: RenderProject) -> None:
    mode = (render_project() / ".env").stat().st_mode
    assert mode & 0o077 == 0, f".env has mode {oct(mode & 0o777)}"


@GENERATED
def test_a_generated_secret_is_at_least_32_characters(render_project: RenderProject, name: str) -> None:
    assert len(generated(render_project(), name)) >= 32


@GENERATED
def test_a_generated_secret_differs_between_two_copies(render_project: RenderProject, name: str) -> None:
    assert generated(render_project(), name) != generated(render_project(), name)


@GENERATED
def test_a_generated_secret_is_not_the_example_value(render_project: RenderProject, name: str) -> None:
    project = render_project()
    example = parse_env_file(project / ".env.example").get(name)
    assert generated(project, name) != example
    assert generated(project, name) not in (project / ".env.example").read_text(encoding="utf-8")


def test_the_database_password_can_go_into_a_url_as_it_is(render_project: RenderProject) -> None:
    password = generated(render_project(), "POSTGRES_PASSWORD")
    assert password.replace("-", "").replace("_", "").isalnum(), password


def test_env_file_keeps_every_setting_of_the_example(render_project: RenderProject) -> None:
    project = render_project()
    missing = set(env_file_keys(project / ".env.example")) - set(env_file_keys(project / ".env"))
    assert not missing, f".env lacks settings listed in .env.example: {sorted(missing)}"


def test_env_file_is_gitignored_in_the_generated_project(render_project: RenderProject) -> None:
    project = render_project()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)

    def ignored(name: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", name], cwd=project, check=False).returncode == 0

    assert ignored(".env"), ".env is not ignored by the generated .gitignore"
    assert not ignored(".env.example"), ".env.example must be committed"


@GENERATED
def test_a_generated_secret_is_written_nowhere_but_the_env_file(
    render_project: RenderProject, name: str
) -> None:
    project = render_project()
    value = generated(project, name)
    leaks = [
        str(p.relative_to(project))
        for p in project_files(project)
        if p.name != ".env" and value in (read_text(p) or "")
    ]
    assert not leaks, f"the {name} value also appears in {leaks}"
    assert name not in (project / ANSWERS_FILE).read_text(encoding="utf-8")


def test_copy_with_tasks_skipped_writes_no_env_file(render_project: RenderProject) -> None:
    assert not (render_project(skip_tasks=True) / ".env").exists()


def test_copying_again_keeps_an_existing_env_file(tmp_path: Path) -> None:
    project = render(tmp_path / "orders-service")
    (project / ".env").write_text((project / ".env").read_text() + "# edited by hand\n")
    before = (project / ".env").read_text()
    render(project, overwrite=True)
    assert (project / ".env").read_text() == before


@pytest.mark.slow
def test_project_works_without_an_env_file(
    render_project: RenderProject, service_urls: dict[str, str]
) -> None:
    project = render_project(skip_tasks=True)
    env = project_env(project, service_urls=service_urls)
    run(["uv", "sync"], project, env=env, what="uv sync")
    result = run(["uv", "run", DEFAULT_SLUG, "check-config"], project, env=env, what="check-config")
    assert result.returncode == 0
    run(["uv", "run", "pytest", "-q"], project, env=env, timeout=1200, what="the generated tests")
