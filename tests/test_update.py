"""`copier update` from the template's real releases to HEAD, as a team meets it.

The releases are those CHANGELOG.md records, each with its commit. The suite rebuilds
them in a git repository of its own: the template at each release's commit, tagged, then
this working tree as the newest commit, untagged. So it needs no tags in the clone it
runs in, only the history.

Each service is generated at a release and gets the edits a team makes: a resource of
its own (router, model, migration, tests), changed setting defaults, a README section, a
deleted doc. Then it is updated to HEAD. It must have no conflict and no .rej file
(except where the CHANGELOG says a release changes lines users edit: there the conflict
is inline and both sides are kept), keep every edit, equal a fresh copy of HEAD with the
same edits file for file, keep its .env, record no secret, and pass its own lint, types
and tests. Every feature is switched on during an update from the newest release, then
off again; a rename of the package or the command is refused; a new python_version is
carried across.

The gates run once per content: a service whose files are identical to one that passed
earlier in the run (switching on a feature that is on by default gives the default
service, as the update from a release does) takes that result and its uv.lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from copier import VcsRef
from copier.errors import TaskError

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

CHANGELOG = ROOT / "CHANGELOG.md"
HEAD = "HEAD"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Suite",
    "GIT_AUTHOR_EMAIL": "suite@example.com",
    "GIT_COMMITTER_NAME": "Template Suite",
    "GIT_COMMITTER_EMAIL": "suite@example.com",
}
# Not part of a service's content: produced by running it, or private to one checkout.
NOT_COMPARED = {".git", ".venv", ".env", "uv.lock", "local.db", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
RELEASE_HEADING = re.compile(r"^## (v\d+\.\d+\.\d+\S*)\s*$", re.M)
RECORDED_COMMIT = re.compile(r"from commit ([0-9a-f]{40})")
EXPECTED_CONFLICTS = re.compile(r"^Conflicts expected in: (.+)$", re.M)


# ---------------------------------------------------------------------------
# The releases, from CHANGELOG.md
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: str
    commit: str
    conflicts: tuple[str, ...]  # files whose user-edited lines the release changes


def changelog_sections() -> list[tuple[str, str]]:
    """(heading, text) of each section of CHANGELOG.md, newest first."""
    text = CHANGELOG.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.M)[1:]
    return list(zip(parts[::2], parts[1::2], strict=True))


def conflicts_in(text: str) -> tuple[str, ...]:
    return tuple(
        f.strip().strip("`") for m in EXPECTED_CONFLICTS.finditer(text) for f in m.group(1).split(",")
    )


def recorded_releases() -> list[Release]:
    """Every release of CHANGELOG.md, oldest first, with the commit it records."""
    releases = []
    for heading, text in changelog_sections():
        match = RELEASE_HEADING.match(f"## {heading}")
        if not match:
            continue
        version = match.group(1)
        commit = RECORDED_COMMIT.search(text)
        if commit is None:
            tagged = git_in_root("rev-list", "-n", "1", version, check=False)
            if not tagged:
                pytest.fail(
                    f"CHANGELOG.md records no commit for {version}, and there is no tag", pytrace=False
                )
            releases.append(Release(version, tagged, conflicts_in(text)))
        else:
            releases.append(Release(version, commit.group(1), conflicts_in(text)))
    return releases[::-1]


def unreleased_conflicts() -> tuple[str, ...]:
    return next(
        (conflicts_in(text) for heading, text in changelog_sections() if heading.strip() == "Unreleased"), ()
    )


def conflicts_since(release: Release) -> set[str]:
    """Files where the releases after ``release`` (and Unreleased) change lines users edit."""
    later = RELEASES[[r.version for r in RELEASES].index(release.version) + 1 :]
    return {*unreleased_conflicts(), *(f for r in later for f in r.conflicts)}


# ---------------------------------------------------------------------------
# git
# ---------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def git_in_root(*args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if check:
        assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout.strip() if done.returncode == 0 else ""


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)


RELEASES = recorded_releases()
PREVIOUS = RELEASES[-1]  # the release before HEAD


# ---------------------------------------------------------------------------
# The template's history, rebuilt
# ---------------------------------------------------------------------------


def clear(repo: Path) -> None:
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def extract_commit(commit: str, repo: Path) -> None:
    """The template's files at ``commit`` (from this repository's history) into repo."""
    if not git_in_root("cat-file", "-t", commit, check=False):
        pytest.fail(f"commit {commit} of CHANGELOG.md is not in this clone's history", pytrace=False)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(repo, filter="tar")


def copy_working_tree(repo: Path) -> None:
    """This working tree's files (tracked and untracked, not ignored) into repo."""
    listed = git_in_root("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)


@pytest.fixture(scope="session")
def template_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's releases, each commit tagged, then this working tree as HEAD."""
    repo = tmp_path_factory.mktemp("template-history")
    git("init", "-q", "-b", "main", cwd=repo)
    for release in RELEASES:
        clear(repo)
        extract_commit(release.commit, repo)
        commit_all(repo, f"Release {release.version}")
        git("tag", release.version, cwd=repo)
    clear(repo)
    copy_working_tree(repo)
    commit_all(repo, "HEAD: the working tree")
    return repo


# ---------------------------------------------------------------------------
# Services and the team's edits
# ---------------------------------------------------------------------------

USER_README_SECTION = "\n## Our team's notes\n\nPage the on-call engineer before a migration.\n"
NOTE_MODEL = '''"""The notes table: the team's own resource."""

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(500))
'''
NOTE_ROUTER = '''"""HTTP routes of the notes API."""

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from ..db import SessionDep
from .models import Note


class NoteBody(BaseModel):
    text: str


class NoteRead(NoteBody):
    model_config = ConfigDict(from_attributes=True)

    id: int


router = APIRouter(prefix="/notes", tags=["notes"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_note(body: NoteBody, session: SessionDep) -> NoteRead:
    note = Note(text=body.text)
    session.add(note)
    await session.flush()
    return NoteRead.model_validate(note)


@router.get("")
async def list_notes(session: SessionDep) -> list[NoteRead]:
    notes = await session.scalars(select(Note).order_by(Note.id))
    return [NoteRead.model_validate(note) for note in notes]
'''
NOTE_MIGRATION = '''"""Create the notes table.

Revision ID: 0100
Revises: {down}
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0100"
down_revision: str | None = "{down}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )


def downgrade() -> None:
    op.drop_table("notes")
'''
NOTE_TESTS = '''"""The team's own tests of its notes."""

import httpx


async def test_a_note_is_listed_once_created(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/v1/notes", json={"text": "Buy milk"})
    assert created.status_code == 201
    listed = (await client.get("/api/v1/notes")).json()
    assert [note["text"] for note in listed] == ["Buy milk"]
'''
ITEMS_IMPORT = "from .items.router import router as items_router\n"
POOL_DEFAULT = "db_pool_size: int = Field(default=5, ge=1)"
HEALTH_TIMEOUT = "health_check_timeout: float = Field(default=1.0, gt=0)"
# What an edit leaves in its file, to check that nothing of it is lost.
EDIT_MARKS = {
    "README.md": "Our team's notes",
    f"src/{DEFAULT_PACKAGE}/settings.py": "Field(default=7, ge=1)",
    f"src/{DEFAULT_PACKAGE}/api.py": "api_router.include_router(notes_router)",
    f"src/{DEFAULT_PACKAGE}/models.py": "Note",
}


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} no longer has {old!r}: update the test's edits"
    path.write_text(text.replace(old, new), encoding="utf-8")


def main_head(versions: Path) -> str:
    """The head of the migrations' main branch (from 0001): where a team's migrations go."""
    parents = {}
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision: str = "(\w+)"', text, re.M)
        down = re.search(r'^down_revision: str \| None = "(\w+)"', text, re.M)
        assert revision, path
        parents[revision.group(1)] = down.group(1) if down else None
    head = "0001"
    while child := next((rev for rev, parent in parents.items() if parent == head), None):
        head = child
    return head


def apply_user_edits(project: Path, features: frozenset[str] | None = None) -> frozenset[str]:
    """The edits a team makes, the same in a service of any release since v0.1.0.

    Some edit a feature's file: those of the ``features`` given, else of every feature
    the service has. Returns the features whose files were edited.
    """
    package = project / "src" / DEFAULT_PACKAGE
    notes = package / "notes"
    notes.mkdir()
    (notes / "__init__.py").write_text('"""The notes: a resource the team added."""\n')
    (notes / "models.py").write_text(NOTE_MODEL)
    (notes / "router.py").write_text(NOTE_ROUTER)
    versions = package / "migrations" / "versions"
    down = main_head(versions)
    (versions / "0100_create_notes.py").write_text(NOTE_MIGRATION.format(down=down))
    (project / "tests" / "test_notes.py").write_text(NOTE_TESTS)

    notes_import = "from .notes.router import router as notes_router\n"
    replace_in(package / "api.py", ITEMS_IMPORT, ITEMS_IMPORT + notes_import)
    api = package / "api.py"
    api.write_text(api.read_text() + "api_router.include_router(notes_router)\n")
    replace_in(
        package / "models.py",
        "from .items.models import Item\n",
        "from .items.models import Item\nfrom .notes.models import Note\n",
    )
    replace_in(package / "models.py", "(Item, *(", "(Item, Note, *(")

    replace_in(package / "settings.py", POOL_DEFAULT, POOL_DEFAULT.replace("5", "7"))
    edited = set()
    health = package / "health.py"
    if (health.exists() and features is None) or "health" in (features or ()):
        # A feature's default, in the feature's own settings mixin.
        replace_in(health, HEALTH_TIMEOUT, HEALTH_TIMEOUT.replace("1.0", "2.0"))
        edited.add("health")
    (project / "README.md").write_text((project / "README.md").read_text() + USER_README_SECTION)
    (project / "docs/DEPLOYMENT.md").unlink()
    return frozenset(edited)


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


def update_service(project: Path, *, ref: str | VcsRef = HEAD, data: dict[str, Any] | None = None) -> None:
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


@dataclass(frozen=True)
class Service:
    path: Path
    edited_features: frozenset[str]  # features whose files the team edited


def new_service(template: Path, dst: Path, ref: str, data: dict[str, Any]) -> Service:
    """A service as a team has it: copied, committed, edited, committed."""
    copy_service(template, dst, ref, data)
    git("init", "-q", "-b", "main", cwd=dst)
    commit_all(dst, "Generate the service")
    edited = apply_user_edits(dst)
    commit_all(dst, "Our changes")
    return Service(dst, edited)


def expected_service(template: Path, dst: Path, data: dict[str, Any], edited: frozenset[str]) -> Path:
    """A fresh copy of HEAD with the team's edits: what an updated service must equal."""
    copy_service(template, dst, HEAD, data, tasks=False)
    apply_user_edits(dst, edited)
    return dst


def tree(project: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if path.is_file() and not NOT_COMPARED.intersection(rel.parts) and "__pycache__" not in rel.parts:
            files[rel.as_posix()] = path.read_bytes()
    return files


def differences(actual: Path, expected: Path, *, besides: set[str] = frozenset()) -> list[str]:
    got, want = tree(actual), tree(expected)
    found = [f"only in the updated service: {n}" for n in sorted(set(got) - set(want))]
    found += [f"missing from the updated service: {n}" for n in sorted(set(want) - set(got))]
    found += [f"differs: {n}" for n in sorted(set(got) & set(want)) if got[n] != want[n] and n not in besides]
    return found


def conflict_leftovers(project: Path) -> dict[str, str]:
    found = {}
    for rel, content in tree(project).items():
        if rel.endswith(".rej"):
            found[rel] = ".rej file"
        elif any(line.startswith((b"<<<<<<< ", b">>>>>>> ")) for line in content.splitlines()):
            found[rel] = "conflict markers"
    return found


CONFLICT = re.compile(r"^<<<<<<< [^\n]*\n(.*?)^=======\n.*?^>>>>>>> [^\n]*\n", re.M | re.S)


def resolve_taking_the_teams_side(project: Path, names: set[str]) -> None:
    """Resolve announced conflicts as a team that keeps its edit would, and commit."""
    for name in names:
        path = project / name
        path.write_text(CONFLICT.sub(r"\1", path.read_text(encoding="utf-8")), encoding="utf-8")
    if names:
        commit_all(project, "Resolve the conflicts the release announced")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pytest_args_for(project: Path) -> list[str]:
    answers = load_answers(project)
    enabled = [toggle for toggle in feature_toggles() if answers.get(toggle)]
    return [arg for toggle in enabled for arg in FEATURES.get(toggle, Footprint()).pytest_args]


def gates_key(project: Path) -> str:
    """A digest of what a service's gates read: its files (as `tree` compares them), its
    uv.lock, and the names of its .env variables. Not their values: .env's secrets are
    new random ones in every copy."""
    files = tree(project)
    lock = project / "uv.lock"
    if lock.exists():
        files["uv.lock"] = lock.read_bytes()
    files[".env names"] = "\n".join(sorted(parse_env_file(project / ".env"))).encode()
    digest = hashlib.sha256()
    for name, content in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class PassedGates:
    """The services whose gates passed in this run, by `gates_key`, each with the uv.lock
    its `uv sync` wrote. A directory that all xdist workers share: several flips arrive
    at the same files (every feature on by default switched on is the default service)."""

    directory: Path

    @contextmanager
    def lock(self, key: str) -> Iterator[Path]:
        """Held while the gates of `key` run: a worker that arrives at the same files
        waits for the result rather than run them beside it. Yields where that
        result's uv.lock is (absent until they have passed)."""
        with (self.directory / f"{key}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield self.directory / f"{key}.uv.lock"


@pytest.fixture(scope="session")
def passed_gates(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> PassedGates:
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # beside the workers' own
    directory = shared / "passed-gates"
    directory.mkdir(exist_ok=True)
    return PassedGates(directory)


def assert_service_passes_its_gates(
    project: Path, service_urls: dict[str, str], mypy_cache_dir: Path | None, passed: PassedGates
) -> None:
    """uv sync, then the service's own lint, format, types and tests (none skipped).

    Files identical to a service whose gates passed earlier in this run (`gates_key`)
    get that service's uv.lock, as their own `uv sync` would have written it, and not
    the same gates again.
    """
    key = gates_key(project)
    with passed.lock(key) as passed_lock:
        if passed_lock.exists():
            shutil.copyfile(passed_lock, project / "uv.lock")
            return
        run_gates(project, service_urls, mypy_cache_dir)
        shutil.copyfile(project / "uv.lock", passed_lock.with_suffix(".tmp"))
        passed_lock.with_suffix(".tmp").rename(passed_lock)


def run_gates(project: Path, service_urls: dict[str, str], mypy_cache_dir: Path | None) -> None:
    env = project_env(project, service_urls=service_urls)
    run(["uv", "sync"], project, env=env, what="uv sync")
    run(["uv", "run", "ruff", "check", "."], project, env=env, what="ruff check")
    run(["uv", "run", "ruff", "format", "--check", "."], project, env=env, what="ruff format")
    # The worker's shared mypy cache, as in the matrix: the same result as a cold run.
    mypy_env = env if mypy_cache_dir is None else {**env, "MYPY_CACHE_DIR": str(mypy_cache_dir)}
    run(["uv", "run", "mypy"], project, env=mypy_env, what="mypy")
    report = project / ".pytest_cache" / "update.xml"
    tests = ["uv", "run", "pytest", "-q", *pytest_args_for(project), f"--junitxml={report}"]
    run(tests, project, env=env, timeout=1200, what="the service's tests")
    assert not skipped_tests(report), f"tests were skipped, which is no pass: {skipped_tests(report)}"


def assert_no_secret_in_answers(project: Path) -> None:
    answers_text = (project / ANSWERS_FILE).read_text(encoding="utf-8")
    secret = parse_env_file(project / ".env")["SECRET_KEY"]
    assert secret not in answers_text
    assert not [key for key in load_answers(project) if "secret" in key.lower() or "password" in key.lower()]


# ---------------------------------------------------------------------------
# From each release to HEAD (one updated service per release, checked by several tests)
# ---------------------------------------------------------------------------


@dataclass
class Updated:
    release: Release
    project: Path
    expected: Path
    env_digest_before: str
    untracked_after: list[str]


@pytest.fixture(scope="module", params=RELEASES, ids=[r.version for r in RELEASES])
def updated(
    request: pytest.FixtureRequest, template_history: Path, tmp_path_factory: pytest.TempPathFactory
) -> Updated:
    """A service generated at a release, edited, and updated to HEAD."""
    release: Release = request.param
    tmp_path = tmp_path_factory.mktemp(f"from-{release.version}")
    service = new_service(template_history, tmp_path / "service", release.version, {})
    project = service.path
    env_digest = digest(project / ".env")
    assert git("status", "--porcelain", cwd=project) == "", "the tree must be clean before updating"
    update_service(project)
    untracked = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all", cwd=project).splitlines()
        if line.startswith("??")
    ]
    expected = expected_service(template_history, tmp_path / "expected", {}, service.edited_features)
    return Updated(release, project, expected, env_digest, untracked)


# The updated services are made once, for all the tests of this group (one worker).
updates = pytest.mark.xdist_group("updates")


@updates
def test_an_update_leaves_no_conflict_but_those_the_changelog_announces(updated: Updated) -> None:
    announced = conflicts_since(updated.release)
    assert set(conflict_leftovers(updated.project)) == announced


@updates
def test_an_announced_conflict_keeps_both_sides(updated: Updated) -> None:
    for name in conflicts_since(updated.release):
        text = (updated.project / name).read_text(encoding="utf-8")
        assert "=======" in text
        if name in EDIT_MARKS:
            assert EDIT_MARKS[name] in text, f"the team's edit of {name} was lost"


@updates
def test_an_update_equals_a_fresh_copy_of_head_with_the_same_edits(updated: Updated) -> None:
    besides = conflicts_since(updated.release)
    assert differences(updated.project, updated.expected, besides=besides) == []


@updates
def test_an_update_keeps_every_edit(updated: Updated) -> None:
    for name, mark in EDIT_MARKS.items():
        assert mark in (updated.project / name).read_text(encoding="utf-8"), name
    assert (updated.project / "src" / DEFAULT_PACKAGE / "notes" / "router.py").read_text() == NOTE_ROUTER
    assert (updated.project / "tests" / "test_notes.py").read_text() == NOTE_TESTS


@updates
def test_an_update_leaves_a_deleted_file_deleted(updated: Updated) -> None:
    assert not (updated.project / "docs/DEPLOYMENT.md").exists()


@updates
def test_an_update_does_not_touch_env(updated: Updated) -> None:
    assert digest(updated.project / ".env") == updated.env_digest_before


@updates
def test_an_update_leaves_untracked_only_the_files_it_adds(updated: Updated) -> None:
    added = set(tree(updated.expected)) - set(git("ls-files", cwd=updated.project).splitlines())
    assert set(updated.untracked_after) == added


@updates
def test_an_update_records_head_and_no_secret(updated: Updated, template_history: Path) -> None:
    describe = git("describe", "--tags", "--always", "HEAD", cwd=template_history).strip()
    assert load_answers(updated.project)["_commit"] == describe
    assert_no_secret_in_answers(updated.project)


@updates
@pytest.mark.slow
def test_an_updated_service_passes_its_own_gates(
    updated: Updated, service_urls: dict[str, str], mypy_cache_dir: Path | None, passed_gates: PassedGates
) -> None:
    resolve_taking_the_teams_side(updated.project, conflicts_since(updated.release))
    assert_service_passes_its_gates(updated.project, service_urls, mypy_cache_dir, passed_gates)


# ---------------------------------------------------------------------------
# Flips: each feature switched on while updating from the previous release, then off
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("toggle", feature_toggles())
def test_a_feature_switched_on_while_updating_then_off_equals_fresh_copies(
    toggle: str,
    template_history: Path,
    tmp_path: Path,
    service_urls: dict[str, str],
    mypy_cache_dir: Path | None,
    passed_gates: PassedGates,
) -> None:
    service = new_service(template_history, tmp_path / "service", PREVIOUS.version, {toggle: False})
    project = service.path
    env_digest = digest(project / ".env")
    besides = conflicts_since(PREVIOUS)
    for value, ref in ((True, HEAD), (False, VcsRef.CURRENT)):
        update_service(project, ref=ref, data={toggle: value})
        commit_all(project, f"{toggle}={value}")
        expected = expected_service(
            template_history, tmp_path / f"expected-{value}", {toggle: value}, service.edited_features
        )
        assert load_answers(project)[toggle] is value
        assert set(conflict_leftovers(project)) == (besides if value else set())
        assert differences(project, expected, besides=besides) == []
        assert digest(project / ".env") == env_digest
        assert_no_secret_in_answers(project)
        resolve_taking_the_teams_side(project, set(conflict_leftovers(project)))
        assert_service_passes_its_gates(project, service_urls, mypy_cache_dir, passed_gates)
        commit_all(project, "uv.lock after the flip")  # as the team would, before the next update


# ---------------------------------------------------------------------------
# Answers an update cannot change, and one it carries across
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "value"), [("package_name", "billing"), ("project_slug", "billing-service")]
)
def test_an_update_that_renames_the_service_is_refused_and_changes_nothing(
    template_history: Path, tmp_path: Path, answer: str, value: str, capfd: pytest.CaptureFixture[str]
) -> None:
    project = new_service(template_history, tmp_path / "service", PREVIOUS.version, {}).path
    answers_before = (project / ANSWERS_FILE).read_text()
    with pytest.raises(TaskError):
        update_service(project, data={answer: value})
    assert f'{answer} from "' in capfd.readouterr().err
    assert git("status", "--porcelain", cwd=project) == ""
    assert (project / ANSWERS_FILE).read_text() == answers_before


@pytest.mark.slow
def test_a_new_python_version_is_carried_across_an_update(
    template_history: Path,
    tmp_path: Path,
    service_urls: dict[str, str],
    mypy_cache_dir: Path | None,
    passed_gates: PassedGates,
) -> None:
    service = new_service(template_history, tmp_path / "service", PREVIOUS.version, {})
    project = service.path
    update_service(project, data={"python_version": "3.12"})
    expected = expected_service(
        template_history, tmp_path / "expected", {"python_version": "3.12"}, service.edited_features
    )
    assert conflict_leftovers(project) == {}
    assert differences(project, expected, besides=conflicts_since(PREVIOUS)) == []
    assert (project / ".python-version").read_text().strip() == "3.12"
    commit_all(project, "Python 3.12")
    assert_service_passes_its_gates(project, service_urls, mypy_cache_dir, passed_gates)


# ---------------------------------------------------------------------------
# What Copier's command line says
# ---------------------------------------------------------------------------


def copier_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    copier = Path(sys.executable).parent / "copier"
    return subprocess.run(
        [str(copier), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **GIT_IDENTITY},
    )


def test_the_command_line_says_what_to_do_after_a_copy_and_an_update(
    template_history: Path, tmp_path: Path
) -> None:
    options = [
        "--trust",
        "--defaults",
        "--vcs-ref",
        HEAD,
        "--data",
        "project_name=Orders Service",
    ]
    copied = copier_command("copy", *options, str(template_history), "service", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert f"Making a service from {template_history}" in copied.stderr
    assert "git init && git add -A" in copied.stderr
    service = tmp_path / "service"
    git("init", "-q", "-b", "main", cwd=service)
    commit_all(service, "Generate the service")
    updated = copier_command("update", "--trust", "--skip-answered", "--vcs-ref", HEAD, cwd=service)
    assert updated.returncode == 0, updated.stderr
    assert "your edits are kept" in updated.stderr
    assert "git grep -n '^<<<<<<< '" in updated.stderr
    assert "uv lock" in updated.stderr
