"""Alembic migrations, shipped inside the package so they run from any directory.

The core's tables, and yours, are the "main" branch; a feature with tables of its own
keeps them in a branch of its own. ``upgrade`` applies every branch.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config for this package; ``database_url`` overrides the settings."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str | None = None, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
