"""The operations files of a generated project pass their own linters.

For every combination of the feature toggles (features change the Dockerfile, the
compose file and the workflow): hadolint on the Dockerfile, the Compose Specification
schema on compose.yaml, actionlint (with shellcheck on `run:` scripts) on the GitHub
workflows, and every YAML file parses. The linters come from the suite's own virtual
environment (the dev dependency group), so no Docker engine or network is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from harness import feature_combinations, project_files, render, run

BIN = Path(sys.executable).parent

COMBINATIONS = [
    pytest.param(c, id=c.id, marks=pytest.mark.xdist_group(f"ops-{c.id}")) for c in feature_combinations()
]


@pytest.fixture(scope="module", params=COMBINATIONS)
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    combination = request.param
    # Tasks only write .env, which no linter here reads.
    return render(
        tmp_path_factory.mktemp(combination.id) / "orders-service", combination.data, skip_tasks=True
    )


def tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is missing from {BIN}: run `uv sync` in the template repo"
    return str(path)


def lint(args: list[str], project: Path, what: str) -> None:
    run(args, project, env=dict(os.environ), timeout=300, what=what)


def test_dockerfile_passes_hadolint(project: Path) -> None:
    assert (project / "Dockerfile").is_file()
    lint([tool("hadolint"), "Dockerfile"], project, "hadolint")


def test_compose_file_matches_the_compose_specification(project: Path) -> None:
    assert (project / "compose.yaml").is_file()
    lint(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        project,
        "check-jsonschema",
    )


def test_github_workflows_pass_actionlint(project: Path) -> None:
    workflows = sorted(
        str(p.relative_to(project)) for p in (project / ".github" / "workflows").glob("*.y*ml")
    )
    assert workflows, "no workflow in .github/workflows"
    lint(
        [tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", "-pyflakes=", *workflows],
        project,
        "actionlint",
    )


def test_every_yaml_file_parses(project: Path) -> None:
    broken = []
    for path in project_files(project):
        if path.suffix in {".yml", ".yaml"}:
            try:
                list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except yaml.YAMLError as error:
                broken.append(f"{path.relative_to(project)}: {error}")
    assert not broken, "\n".join(broken)
