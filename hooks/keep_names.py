"""Refuse a ``copier update`` that would rename the service's package or distribution.

An update that changes ``project_slug`` or ``package_name`` re-renders the template's
files under the new names and leaves the team's own edits under the old ones. So an
update keeps both names, and a rename is done by hand (the message says how). Copier
runs this script as a migration of every update, in the project's directory:

    keep_names.py before SLUG PACKAGE   before the update, with the answers given
                                        with --data ("" for one not given)
    keep_names.py after                 after the update

``before`` compares the names given with those of ``.copier-answers.yml``. ``after``
compares the updated answers file with the committed one (a name typed at a prompt
is only known then) and, when a name changed, puts the project back as it was
committed: Copier updates a clean tree only, so nothing else is lost. Either way the
script exits 1 with how to rename by hand. Standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ANSWERS_FILE = ".copier-answers.yml"
NAMES = ("project_slug", "package_name")

HOW_TO_RENAME = """\
copier update does not rename the service: {changes}.
It would render the template's files under the new name and leave your own edits
under the old one. Rename by hand, in a clean tree, then update as usual:

  git mv src/{old_package} src/{new_package}      # if package_name changes
  git grep -lwE '{old_package}|{old_slug}'        # every file that names them
  (replace the old names in those files, and in .copier-answers.yml)
  uv lock && uv run pytest && git commit -am "Rename the service"
"""


def read_names(text: str) -> dict[str, str]:
    """The names in an answers file (one ``key: value`` a line, as Copier writes it)."""
    names = {}
    for key in NAMES:
        match = re.search(rf"^{key}:\s*(.*?)\s*$", text, re.MULTILINE)
        if match:
            names[key] = match.group(1).strip("'\"")
    return names


def refusal(old: dict[str, str], new: dict[str, str]) -> str | None:
    changed = [key for key in NAMES if key in old and key in new and old[key] != new[key]]
    if not changed:
        return None
    changes = ", ".join(f'{key} from "{old[key]}" to "{new[key]}"' for key in changed)
    return HOW_TO_RENAME.format(
        changes=changes,
        old_package=old.get("package_name", ""),
        new_package=new.get("package_name", ""),
        old_slug=old.get("project_slug", ""),
        new_slug=new.get("project_slug", ""),
    )


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def before(slug: str, package: str) -> str | None:
    answers = Path(ANSWERS_FILE)
    if not answers.is_file():
        return None
    old = read_names(answers.read_text(encoding="utf-8"))
    given = {"project_slug": slug, "package_name": package}
    return refusal(old, {key: value for key, value in given.items() if value})


def after() -> str | None:
    try:
        committed = git("show", f"HEAD:{ANSWERS_FILE}")
    except subprocess.CalledProcessError:
        return None  # Nothing committed to compare with.
    message = refusal(read_names(committed), read_names(Path(ANSWERS_FILE).read_text(encoding="utf-8")))
    if message:
        # The tree was clean before the update: what differs now is the update's.
        git("checkout", "--", ".")
        git("clean", "-fdq", "--", ".")
        message += "\nThe update was undone: the project is as it was committed.\n"
    return message


def main(argv: list[str]) -> int:
    if argv[:1] == ["before"] and len(argv) == 3:
        message = before(argv[1], argv[2])
    elif argv == ["after"]:
        message = after()
    else:
        print("usage: keep_names.py before SLUG PACKAGE | after", file=sys.stderr)
        return 2
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
