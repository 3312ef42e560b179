"""`copier update`: a newer release reaches an edited service, and features switch on and off.

The tests work on a git copy of this template with two releases:

    v0.1.0  the template as it is in this working tree
    v0.2.0  v0.1.0 plus a synthetic change: a file the user deleted, a file the user
            edited, a file nobody touched, and a new file

A generated service gets the same user edits in every test (a new route with its test, a
changed setting default, a README section, a deleted doc). After an update the service
must equal a fresh copy of the target release with the same answers and the same user
edits applied, file for file; its `.env` must be untouched; and its own tests must pass.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from copier import VcsRef

from features import FEATURES, Footprint
from harness import (
    ANSWERS_FILE,
    BASE_DATA,
    DEFAULT_PACKAGE,
    ROOT,
    feature_toggles,
    load_answers,
    parse_env_file,
    project_env,
    run,
    skipped_tests,
)

OLD, NEW = "v0.1.0", "v0.2.0"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Suite",
    "GIT_AUTHOR_EMAIL": "suite@example.com",
    "GIT_COMMITTER_NAME": "Template Suite",
    "GIT_COMMITTER_EMAIL": "suite@example.com",
}
# Not part of a service's content: produced by running it, or private to one checkout.
NOT_COMPARED = {".git", ".venv", ".env", "uv.lock", "local.db", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

SYNTHETIC_NOTE = "Synthetic change of the v0.2.0 test release."
USER_README_SECTION = "\n## Our team's notes\n\nPage the on-call engineer before a migration.\n"
USER_ROUTE = '''"""A route the service's team added."""

from fastapi import APIRouter

router = APIRouter(prefix="/hello", tags=["hello"])


@router.get("")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
'''
USER_ROUTE_TEST = '''"""The team's own test of its route."""

import httpx


async def test_hello(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/hello")
    assert response.json() == {"hello": "world"}
'''


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)


# ---------------------------------------------------------------------------
# The template, as a git repository with two releases
# ---------------------------------------------------------------------------


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def make_synthetic_release(template: Path) -> None:
    """What v0.2.0 changes, relative to v0.1.0."""
    append(template / "template/docs/DEPLOYMENT.md.jinja", f"\n{SYNTHETIC_NOTE}\n")
    readme = template / "template/README.md.jinja"
    title, rest = readme.read_text(encoding="utf-8").split("\n", 1)
    readme.write_text(f"{title}\n\n{SYNTHETIC_NOTE}\n{rest}", encoding="utf-8")
    append(template / "template/src/{{ package_name }}/db.py", f"\n# {SYNTHETIC_NOTE}\n")
    (template / "template/docs/RELEASE_NOTES.md").write_text(f"# Release notes\n\n{SYNTHETIC_NOTE}\n")


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This template (tracked and untracked files of the working tree) with tags v0.1.0 and v0.2.0."""
    repo = tmp_path_factory.mktemp("template-repo")
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git("init", "-q", "-b", "main", cwd=repo)
    commit_all(repo, "Release v0.1.0")
    git("tag", OLD, cwd=repo)
    make_synthetic_release(repo)
    commit_all(repo, "Release v0.2.0")
    git("tag", NEW, cwd=repo)
    return repo


# ---------------------------------------------------------------------------
# Services, user edits, and comparing trees
# ---------------------------------------------------------------------------


def copy_service(template: Path, dst: Path, ref: str, data: dict[str, Any], *, tasks: bool = True) -> Path:
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(template),
            str(dst),
            data={**BASE_DATA, **data},
            vcs_ref=ref,
            defaults=True,
            unsafe=True,
            skip_tasks=not tasks,
            quiet=True,
        )
    return dst


def update_service(
    project: Path, *, ref: str | VcsRef | None = None, data: dict[str, Any] | None = None
) -> None:
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_update(
            str(project),
            data=data or {},
            vcs_ref=ref,
            defaults=True,
            overwrite=True,
            skip_answered=True,
            unsafe=True,
            quiet=True,
        )


def apply_user_edits(project: Path) -> None:
    """The edits a team makes to its service: the same text changes in any release."""
    package = project / "src" / DEFAULT_PACKAGE
    (package / "hello.py").write_text(USER_ROUTE, encoding="utf-8")
    (project / "tests/test_hello.py").write_text(USER_ROUTE_TEST, encoding="utf-8")
    api = package / "api.py"
    items_import = "from .items.router import router as items_router\n"
    text = api.read_text(encoding="utf-8")
    assert items_import in text
    text = text.replace(items_import, "from .hello import router as hello_router\n" + items_import)
    api.write_text(text + "api_router.include_router(hello_router)\n", encoding="utf-8")

    settings = package / "settings.py"
    default_pool = "db_pool_size: int = Field(default=5, ge=1)"
    assert default_pool in settings.read_text(encoding="utf-8")
    settings.write_text(
        settings.read_text(encoding="utf-8").replace(default_pool, default_pool.replace("5", "7")),
        encoding="utf-8",
    )
    append(project / "README.md", USER_README_SECTION)
    (project / "docs/DEPLOYMENT.md").unlink()


def tree(project: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if path.is_file() and not NOT_COMPARED.intersection(rel.parts) and "__pycache__" not in rel.parts:
            files[rel.as_posix()] = path.read_bytes()
    return files


def assert_same_tree(actual: Path, expected: Path) -> None:
    got, want = tree(actual), tree(expected)
    assert sorted(got) == sorted(want), "the updated service has other files than a fresh copy"
    differing = [name for name in want if got[name] != want[name]]
    assert not differing, f"files differ from a fresh copy with the same edits: {differing}"


def expected_service(template: Path, dst: Path, ref: str, data: dict[str, Any]) -> Path:
    """A fresh copy of `ref` with the user's edits: what an updated service must equal."""
    copy_service(template, dst, ref, data, tasks=False)
    apply_user_edits(dst)
    return dst


def new_service(template: Path, dst: Path, ref: str, data: dict[str, Any]) -> Path:
    """A service as a team has it: copied, committed, edited, committed."""
    copy_service(template, dst, ref, data)
    git("init", "-q", "-b", "main", cwd=dst)
    commit_all(dst, "Generate the service")
    apply_user_edits(dst)
    commit_all(dst, "Our changes")
    return dst


def conflict_leftovers(project: Path) -> list[str]:
    found = []
    for rel, content in tree(project).items():
        if rel.endswith(".rej"):
            found.append(rel)
        elif any(line.startswith((b"<<<<<<< ", b">>>>>>> ")) for line in content.splitlines()):
            found.append(f"{rel} has conflict markers")
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pytest_args_for(project: Path) -> list[str]:
    answers = load_answers(project)
    enabled = [toggle for toggle in feature_toggles() if answers.get(toggle)]
    return [arg for toggle in enabled for arg in FEATURES.get(toggle, Footprint()).pytest_args]


def assert_service_tests_pass(project: Path, service_urls: dict[str, str]) -> None:
    env = project_env(project, service_urls=service_urls)
    run(["uv", "sync"], project, env=env, what="uv sync")
    report = project / ".pytest_cache" / "update.xml"
    run(
        ["uv", "run", "pytest", "-q", *pytest_args_for(project), f"--junitxml={report}"],
        project,
        env=env,
        timeout=1200,
        what="the service's tests",
    )
    assert not skipped_tests(report), f"tests were skipped, which is no pass: {skipped_tests(report)}"


def assert_no_secret_in_answers(project: Path) -> None:
    answers_text = (project / ANSWERS_FILE).read_text(encoding="utf-8")
    secret = parse_env_file(project / ".env")["SECRET_KEY"]
    assert secret not in answers_text
    assert not [key for key in load_answers(project) if "secret" in key.lower() or "password" in key.lower()]


# ---------------------------------------------------------------------------
# Upgrade: v0.1.0 -> v0.2.0 (one upgraded service, checked by several tests)
# ---------------------------------------------------------------------------

upgrade = pytest.mark.xdist_group("upgrade")


@dataclass
class Upgraded:
    project: Path
    expected: Path
    env_digest_before: str
    untracked_after: list[str]


@pytest.fixture(scope="module")
def upgraded(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Upgraded:
    """A service generated at v0.1.0, edited, and updated to v0.2.0 (once for these tests)."""
    tmp_path = tmp_path_factory.mktemp("upgrade")
    project = new_service(template_repo, tmp_path / "service", OLD, {})
    env_digest = digest(project / ".env")
    assert git("status", "--porcelain", cwd=project) == "", "the tree must be clean before updating"
    update_service(project, ref=NEW)
    untracked = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all", cwd=project).splitlines()
        if line.startswith("??")
    ]
    expected = expected_service(template_repo, tmp_path / "expected", NEW, {})
    return Upgraded(project, expected, env_digest, untracked)


@upgrade
def test_upgrade_equals_a_fresh_copy_of_the_new_release_with_the_users_edits(upgraded: Upgraded) -> None:
    assert_same_tree(upgraded.project, upgraded.expected)


@upgrade
def test_upgrade_keeps_the_users_edits_and_brings_the_templates(upgraded: Upgraded) -> None:
    readme = (upgraded.project / "README.md").read_text(encoding="utf-8")
    assert SYNTHETIC_NOTE in readme and USER_README_SECTION in readme
    settings = (upgraded.project / "src" / DEFAULT_PACKAGE / "settings.py").read_text(encoding="utf-8")
    assert "Field(default=7, ge=1)" in settings
    assert (upgraded.project / "docs/RELEASE_NOTES.md").is_file()


@upgrade
def test_upgrade_leaves_a_deleted_file_deleted(upgraded: Upgraded) -> None:
    assert not (upgraded.project / "docs/DEPLOYMENT.md").exists()


@upgrade
def test_upgrade_does_not_touch_env(upgraded: Upgraded) -> None:
    assert digest(upgraded.project / ".env") == upgraded.env_digest_before


@upgrade
def test_upgrade_leaves_no_conflicts(upgraded: Upgraded) -> None:
    assert conflict_leftovers(upgraded.project) == []


@upgrade
def test_upgrade_leaves_untracked_only_what_the_release_adds(upgraded: Upgraded) -> None:
    assert upgraded.untracked_after == ["docs/RELEASE_NOTES.md"]


@upgrade
def test_upgrade_records_the_new_release_and_no_secret(upgraded: Upgraded) -> None:
    assert load_answers(upgraded.project)["_commit"] == NEW
    assert_no_secret_in_answers(upgraded.project)


@upgrade
@pytest.mark.slow
def test_upgraded_service_passes_its_own_tests(upgraded: Upgraded, service_urls: dict[str, str]) -> None:
    assert_service_tests_pass(upgraded.project, service_urls)


# ---------------------------------------------------------------------------
# Flips: each feature switched on, then off, at the current release
# ---------------------------------------------------------------------------


def flip(project: Path, toggle: str, value: bool) -> None:
    update_service(project, ref=VcsRef.CURRENT, data={toggle: value})
    commit_all(project, f"{toggle}={value}")


@pytest.mark.slow
@pytest.mark.parametrize("toggle", feature_toggles())
def test_a_feature_switched_on_then_off_equals_fresh_copies(
    toggle: str,
    template_repo: Path,
    tmp_path: Path,
    service_urls: dict[str, str],
) -> None:
    project = new_service(template_repo, tmp_path / "service", NEW, {toggle: False})
    env_digest = digest(project / ".env")
    for value in (True, False):
        flip(project, toggle, value)
        expected = expected_service(template_repo, tmp_path / f"expected-{value}", NEW, {toggle: value})
        assert load_answers(project)[toggle] is value
        assert conflict_leftovers(project) == []
        assert_same_tree(project, expected)
        assert digest(project / ".env") == env_digest
        assert_no_secret_in_answers(project)
        assert_service_tests_pass(project, service_urls)
        commit_all(project, "uv.lock after the flip")  # as the team would, before the next update
