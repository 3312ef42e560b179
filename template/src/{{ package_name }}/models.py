"""Every ORM model, imported so that ``Base.metadata`` knows all tables."""

from .db import Base
from .items.models import Item

__all__ = ["Base", "Item"]
