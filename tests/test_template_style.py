"""How the template's own sources are written: features as files, and Jinja kept small.

A feature is a set of files: the shared Python that is always rendered assembles the
features from one list (service.py) and holds no other conditional; a feature's own
Python names no other feature's toggle; every Jinja statement is written one way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import ROOT, feature_toggles, questions

TEMPLATE = ROOT / "template"
# The always-rendered Python files that may hold conditionals, and why.
FEATURE_LIST = "src/{{ package_name }}/service.py.jinja"
SHARED_CONDITIONALS = {
    FEATURE_LIST: "the list of features",
    # pytest reads command-line options from the root conftest.py only.
    "tests/conftest.py.jinja": "the --run-integration option of the integration tests",
    # Every test's client sends a token when the service has authentication.
    "tests/helpers.py.jinja": "the tests' credentials, with authentication",
}
MAX_LIST_CONDITIONALS = 10
CONDITIONAL = re.compile(r"\{%-?\s*(if|elif)\b")
STATEMENT = re.compile(r"\{%[-+]?\s*(\w+).*?[-+]?%\}")
# A path segment that exists only for some answers: {% if use_x %}name{% endif %}.
CONDITIONAL_SEGMENT = re.compile(r"\{% if (.+?) %\}")
DOCSTRING = re.compile(r'"""(.*?)"""', re.S)


def template_files(pattern: str = "*") -> list[Path]:
    return sorted(p for p in TEMPLATE.rglob(pattern) if p.is_file())


def rel(path: Path) -> str:
    return path.relative_to(TEMPLATE).as_posix()


def is_python(path: Path) -> bool:
    return re.search(r"\.py(\{% endif %\})?(\.jinja)?$", path.name) is not None


def path_condition(path: Path) -> str:
    """The conditions in the file's path ("" for a file that is always rendered)."""
    return " and ".join(CONDITIONAL_SEGMENT.findall(rel(path)))


def toggles_named(text: str) -> set[str]:
    names = set(feature_toggles()) | {name for name in questions() if name.startswith("uses_")}
    return {name for name in names if re.search(rf"\b{name}\b", text)}


def conditional_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [line for line in text.splitlines() if CONDITIONAL.search(line)]


def test_shared_python_has_no_conditional_outside_the_feature_list() -> None:
    offenders = {
        rel(path): len(conditional_lines(path))
        for path in template_files()
        if is_python(path) and not path_condition(path)
        if conditional_lines(path) and rel(path) not in SHARED_CONDITIONALS
    }
    assert offenders == {}, f"conditionals in shared Python (features belong in files): {offenders}"


def test_the_feature_list_stays_small() -> None:
    count = len(conditional_lines(TEMPLATE / FEATURE_LIST))
    assert 0 < count <= MAX_LIST_CONDITIONALS


@pytest.mark.parametrize(
    "path",
    [p for p in template_files() if is_python(p) and path_condition(p)],
    ids=rel,
)
def test_a_feature_file_names_no_other_features_toggle(path: Path) -> None:
    own = toggles_named(path_condition(path))
    others = toggles_named(path.read_text(encoding="utf-8")) - own
    assert not others, f"{rel(path)} tests {sorted(others)}: say so in that feature's own files"


def test_jinja_statements_have_one_whitespace_style() -> None:
    """Every if/endif is a line of its own, written ``{%- if ... %}``; nothing else."""
    odd = []
    for path in template_files("*.jinja"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in STATEMENT.finditer(line):
                if match.group(1) in {"raw", "endraw"}:
                    continue  # GitHub expressions, kept as they are
                own_line = line.strip() == match.group(0)
                if not own_line or not match.group(0).startswith("{%- ") or "-%}" in match.group(0):
                    odd.append(f"{rel(path)}:{number}: {line.strip()}")
    assert odd == []


@pytest.mark.parametrize("path", [p for p in template_files("*.jinja") if is_python(p)], ids=rel)
def test_no_jinja_in_a_python_docstring_or_comment(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    in_docstrings = [doc for doc in DOCSTRING.findall(text) if "{%" in doc or "{{" in doc]
    in_comments = [
        line.strip()
        for line in text.splitlines()
        if "#" in line and re.search(r"\{[{%]", line.split("#", 1)[1])
    ]
    assert (in_docstrings, in_comments) == ([], [])
