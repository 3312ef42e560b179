"""The template repository itself: its README, its CI entry point and its git setup."""

from __future__ import annotations

import re
import subprocess

from harness import ROOT, asked_questions

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
