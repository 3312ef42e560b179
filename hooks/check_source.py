"""Warn when a new service records a template source that a later update cannot find.

Copier runs this once, after ``copier copy``, in the new project, with the source and
the commit it wrote to ``.copier-answers.yml``:

    check_source.py SRC_PATH COMMIT

``copier update`` reads both back. It fails with "only supported in git-tracked
templates" when SRC_PATH is a relative path that does not lead to the template from
where it runs, and with "Unknown revision" when COMMIT exists only in the temporary
copy Copier made of a template checkout with uncommitted changes. Either is warned
about here, with what to do; the copy itself has succeeded. Standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

RELATIVE = re.compile(r"^(\.\.?(/|$)|[^/~\\][^:]*$)")

RELATIVE_WARNING = """\
warning: the template's path "{src}" is relative, and .copier-answers.yml keeps it as
it is: `copier update` will find the template only where that path leads to it.
Copy from an absolute path or a git URL, or change _src_path in .copier-answers.yml
to one ({absolute}).
"""
UNCOMMITTED_WARNING = """\
warning: the template checkout had uncommitted changes. This service was made from
them, and records commit {commit}, which exists only in Copier's temporary copy:
`copier update` will fail with "Unknown revision". Commit the changes in the
template, then set _commit in .copier-answers.yml to that commit.
"""


def warnings(src: str, commit: str, cwd: Path) -> list[str]:
    if "://" in src or src.startswith(("gh:", "gl:", "git@")):
        return []  # A remote: nothing of it can be uncommitted here.
    found = []
    template = Path(src).expanduser()
    if RELATIVE.match(src):
        template = cwd / template
        found.append(RELATIVE_WARNING.format(src=src, absolute=template.resolve()))
    known = subprocess.run(
        ["git", "-C", str(template), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if template.is_dir() and known.returncode != 0:
        found.append(UNCOMMITTED_WARNING.format(commit=commit))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_source.py SRC_PATH COMMIT", file=sys.stderr)
        return 2
    # Copier runs tasks in the new project; the path was given from the shell's directory.
    cwd = Path(os.environ.get("PWD", "."))
    for warning in warnings(argv[0], argv[1], cwd):
        print(warning, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
