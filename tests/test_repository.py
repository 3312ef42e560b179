"""The template repository itself: its README, its CI entry point and its git setup."""

from __future__ import annotations

import re
import shlex
import subprocess

from harness import ROOT, asked_questions, copier_config

README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"


def readme_option_rows() -> list[str]:
    """Question names in the first column of README.md's options table."""
    section = README.read_text(encoding="utf-8").split("## Options", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|\s*`([a-z_]+)`\s*\|", section, re.M)


def test_readme_options_table_lists_exactly_the_questions_of_copier_yml() -> None:
    rows = readme_option_rows()
    assert len(rows) == len(set(rows)), f"questions listed twice: {rows}"
    assert set(rows) == set(asked_questions()), (
        f"README.md lists {sorted(set(rows) - set(asked_questions()))} that copier.yml does not ask, "
        f"and misses {sorted(set(asked_questions()) - set(rows))}"
    )


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Test the template", 1)[1]
    command = re.search(r"```sh\n(.+?)\n```", section, re.S)
    assert command, "README.md's 'Test the template' has no command block"
    last_line = [line for line in CI_SCRIPT.read_text().splitlines() if line.strip()][-1]
    assert last_line.strip() == command.group(1).strip()


def test_no_template_file_is_gitignored() -> None:
    # Copier renders from what git tracks: an ignored file would be missing from a copy
    # made from a clone, but present in one made from a working tree.
    ignored = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", "template", "hooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    caches = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache)/|\.py[cod]$")
    assert [path for path in ignored if path and not caches.search(path)] == []


def test_the_quick_start_copies_from_a_path_that_updates_can_find() -> None:
    section = README.read_text(encoding="utf-8").split("## Generate a service and start it", 1)[1]
    command = next(line for line in section.splitlines() if line.startswith("uvx copier copy"))
    source = shlex.split(command)[-2]
    # shlex leaves "$PWD" as it is: the shell makes it absolute.
    assert source.startswith(("$PWD/", "/", "gh:", "https://", "git+")), source


def test_every_file_setting_of_copier_yml_names_a_file_of_the_template() -> None:
    settings = copier_config()
    template = ROOT / settings["_subdirectory"]
    listed = [*settings.get("_skip_if_exists", []), *settings.get("_exclude", [])]
    rendered = {
        p.relative_to(template).as_posix().removesuffix(".jinja") for p in template.rglob("*") if p.is_file()
    }
    assert [name for name in listed if name not in rendered] == []


def test_every_hook_that_copier_yml_runs_exists() -> None:
    text = (ROOT / "copier.yml").read_text(encoding="utf-8")
    hooks = set(re.findall(r"hooks/(\w+\.py)", text))
    assert hooks, "copier.yml runs no hook"
    assert sorted(h for h in hooks if not (ROOT / "hooks" / h).is_file()) == []
