"""Every ORM model, so that ``Base.metadata`` (and so Alembic) knows every table."""

from .db import Base
from .items.models import Item
from .service import FEATURES

# The items table is the core's; each feature lists its own.
MODELS: tuple[type[Base], ...] = (Item, *(m for f in FEATURES for m in f.models))

__all__ = ["MODELS", "Base"]
