"""The scripts Copier runs besides the .env writer: hooks/keep_names.py (a migration of
every update) and hooks/check_source.py (a task after a copy).

They run here as Copier runs them, as scripts in a project directory, on real git
repositories; tests/test_update.py runs them through `copier update` as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT

KEEP_NAMES = ROOT / "hooks" / "keep_names.py"
CHECK_SOURCE = ROOT / "hooks" / "check_source.py"
ANSWERS = """\
_commit: v0.1.0
_src_path: /templates/service
package_name: orders_service
project_slug: orders-service
"""
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Suite",
    "GIT_AUTHOR_EMAIL": "suite@example.com",
    "GIT_COMMITTER_NAME": "Template Suite",
    "GIT_COMMITTER_EMAIL": "suite@example.com",
}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def script(path: Path, *args: str, cwd: Path, pwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_IDENTITY, "PWD": str(pwd or cwd)}
    return subprocess.run(
        [sys.executable, str(path), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed project with an answers file, as Copier leaves one."""
    root = tmp_path / "service"
    (root / "src" / "orders_service").mkdir(parents=True)
    (root / "src" / "orders_service" / "api.py").write_text("# the team's code\n")
    (root / ".copier-answers.yml").write_text(ANSWERS)
    git("init", "-q", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "Generate", cwd=root)
    return root


# --- keep_names.py --------------------------------------------------------------------


def test_an_update_that_keeps_the_names_goes_ahead(project: Path) -> None:
    done = script(KEEP_NAMES, "before", "orders-service", "orders_service", cwd=project)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(
    ("slug", "package", "named"),
    [
        ("orders-service", "billing", 'package_name from "orders_service" to "billing"'),
        ("billing", "orders_service", 'project_slug from "orders-service" to "billing"'),
    ],
)
def test_an_update_that_renames_is_refused_before_it_starts(
    project: Path, slug: str, package: str, named: str
) -> None:
    done = script(KEEP_NAMES, "before", slug, package, cwd=project)
    assert done.returncode == 1
    assert named in done.stderr
    assert "Rename by hand" in done.stderr


def test_the_refusal_says_how_to_rename_by_hand(project: Path) -> None:
    done = script(KEEP_NAMES, "before", "orders-service", "billing", cwd=project)
    assert "git mv src/orders_service src/billing" in done.stderr


def test_a_rename_answered_at_the_prompt_is_undone_after_the_update(project: Path) -> None:
    # What an update that renamed would leave: new answers, a new package, an edit.
    (project / ".copier-answers.yml").write_text(ANSWERS.replace("orders_service", "billing"))
    (project / "src" / "billing").mkdir()
    (project / "src" / "billing" / "api.py").write_text("# rendered under the new name\n")
    (project / "src" / "orders_service" / "api.py").write_text("# changed by the update\n")
    done = script(KEEP_NAMES, "after", cwd=project)
    assert done.returncode == 1
    assert "undone" in done.stderr
    assert git("status", "--porcelain", cwd=project) == ""
    assert (project / "src" / "orders_service" / "api.py").read_text() == "# the team's code\n"


def test_an_update_that_kept_the_names_is_left_as_it_is(project: Path) -> None:
    (project / "src" / "orders_service" / "api.py").write_text("# updated\n")
    done = script(KEEP_NAMES, "after", cwd=project)
    assert done.returncode == 0
    assert git("status", "--porcelain", cwd=project).strip() == "M src/orders_service/api.py"


# --- check_source.py ------------------------------------------------------------------


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A template checkout, committed: what a copy's _src_path points at."""
    root = tmp_path / "template"
    root.mkdir()
    (root / "copier.yml").write_text("project_name: {type: str}\n")
    git("init", "-q", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "Template", cwd=root)
    return root


def head(repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repo).strip()


def test_an_absolute_path_at_a_known_commit_passes(template: Path, tmp_path: Path) -> None:
    done = script(CHECK_SOURCE, str(template), head(template), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_remote_source_passes(tmp_path: Path) -> None:
    done = script(CHECK_SOURCE, "gh:example/template", "v0.1.0", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_relative_path_is_warned_about_with_the_absolute_one(template: Path, tmp_path: Path) -> None:
    service = tmp_path / "service"
    service.mkdir()
    done = script(CHECK_SOURCE, "template", head(template), cwd=service, pwd=tmp_path)
    assert done.returncode == 0  # a warning: the copy itself has succeeded
    assert 'the template\'s path "template" is relative' in done.stderr
    assert str(template) in done.stderr


def test_a_commit_of_uncommitted_changes_is_warned_about(template: Path, tmp_path: Path) -> None:
    # Copier commits a dirty checkout in a temporary copy: a commit the checkout lacks.
    unknown = "0123456789abcdef0123456789abcdef01234567"
    done = script(CHECK_SOURCE, str(template), unknown, cwd=tmp_path)
    assert done.returncode == 0
    assert "uncommitted changes" in done.stderr
    assert unknown in done.stderr


def test_names_not_given_are_taken_as_kept(project: Path) -> None:
    done = script(KEEP_NAMES, "before", "", "", cwd=project)
    assert (done.returncode, done.stderr) == (0, "")
