"""Move a file or folder in a generated project, for a ``_migrations`` entry.

Usage: ``python move_path.py OLD NEW`` (paths relative to the project, the working
directory Copier runs migrations in).

It is idempotent: nothing happens when OLD is gone or NEW already exists, so running it
twice, or on a project that never had OLD, is safe. Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path


def move(old: Path, new: Path) -> str:
    if not old.exists():
        return f"{old}: not present, nothing to move"
    if new.exists():
        return f"{new}: already exists, leaving {old} in place"
    new.parent.mkdir(parents=True, exist_ok=True)
    old.rename(new)
    return f"moved {old} -> {new}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: move_path.py OLD NEW", file=sys.stderr)
        return 2
    print(move(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
