"""Create the generated project's ``.env`` from its ``.env.example``.

Copier runs this script once, after the first ``copier copy``, with its own Python and
with the new project as the working directory (see ``_tasks`` in ``copier.yml``). It:

* leaves an existing ``.env`` alone, so running it again changes nothing;
* otherwise copies ``.env.example`` to ``.env``, replacing the placeholder
  ``SECRET_KEY=`` line with a fresh random key (``secrets.token_urlsafe(48)``, 64
  characters) and the ``POSTGRES_PASSWORD=`` line (the password of compose.yaml's
  database) with a fresh random password, and an ``AUTH_DEVELOPMENT_KEY=`` line, where
  the example has one, with a fresh secret of its own; and makes the file readable by
  its owner only;
* exits with status 1 and says why when ``.env.example`` is missing.

``.env`` is gitignored and the template has no such file, so ``copier update`` never
touches it. The script uses only the standard library and runs on Python 3.9 and later.
An optional argument names the project directory (default: the current directory).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

EXAMPLE_NAME = ".env.example"
ENV_NAME = ".env"
SECRET_KEY = "SECRET_KEY"
POSTGRES_PASSWORD = "POSTGRES_PASSWORD"
# Present when the project has authentication: it signs development tokens.
AUTH_DEVELOPMENT_KEY = "AUTH_DEVELOPMENT_KEY"


def render_env(example: str, secrets_by_name: dict[str, str]) -> str:
    """Return ``example`` with each ``NAME=`` line of ``secrets_by_name`` set to its value.

    Line endings are kept as they are. If the example has no ``SECRET_KEY=`` line, one
    is appended so that the service still gets a key; other names are set only where
    the example has them.
    """
    lines = example.splitlines(keepends=True)
    replaced = set()
    for index, line in enumerate(lines):
        for name, value in secrets_by_name.items():
            if line.startswith(f"{name}="):
                ending = line[len(line.rstrip("\r\n")) :]
                lines[index] = f"{name}={value}{ending}"
                replaced.add(name)
    if SECRET_KEY in secrets_by_name and SECRET_KEY not in replaced:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"
        lines.append(f"{SECRET_KEY}={secrets_by_name[SECRET_KEY]}\n")
    return "".join(lines)


def write_env(project_dir: Path) -> int:
    """Write ``project_dir/.env`` unless it exists; return the process exit status."""
    env_path = project_dir / ENV_NAME
    example_path = project_dir / EXAMPLE_NAME

    if env_path.exists():
        print(f"{ENV_NAME} already exists in {project_dir.resolve()}; left unchanged.")
        return 0

    try:
        with example_path.open(encoding="utf-8", newline="") as example_file:
            example = example_file.read()
    except FileNotFoundError:
        print(
            f"error: {example_path.resolve()} not found, "
            f"so {ENV_NAME} was not created.\n"
            f"Copy {EXAMPLE_NAME} from the template to {ENV_NAME} and set SECRET_KEY "
            'yourself, e.g. to the output of: python -c "import secrets; '
            'print(secrets.token_urlsafe(48))"',
            file=sys.stderr,
        )
        return 1

    fresh = {
        SECRET_KEY: secrets.token_urlsafe(48),
        POSTGRES_PASSWORD: secrets.token_urlsafe(24),
        AUTH_DEVELOPMENT_KEY: secrets.token_urlsafe(48),
    }
    content = render_env(example, fresh)

    # O_EXCL: never overwrite a .env that appeared meanwhile. 0o600: it holds a secret.
    try:
        fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{ENV_NAME} already exists in {project_dir.resolve()}; left unchanged.")
        return 0
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as env_file:
        env_file.write(content)

    print(
        f"Created {ENV_NAME} from {EXAMPLE_NAME} with new random secrets "
        "(gitignored; keep it out of version control)."
    )
    return 0


def main(argv: list[str]) -> int:
    """Run with ``sys.argv``: an optional project directory, else the current one."""
    if len(argv) > 2:
        print(f"usage: {Path(argv[0]).name} [PROJECT_DIR]", file=sys.stderr)
        return 2
    project_dir = Path(argv[1]) if len(argv) == 2 else Path.cwd()
    return write_env(project_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
