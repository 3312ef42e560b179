"""Request and response bodies of the items API, and the type of its path ids."""

from datetime import datetime
from typing import Annotated, Self

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .models import MAX_ID

# Not enforced as a 422: an id out of the column's range names no item, a 404.
ItemId = Annotated[
    int,
    Path(
        description="The item's id.",
        json_schema_extra={"minimum": 1, "maximum": MAX_ID},
    ),
]


def _has_no_nul(text: str) -> str:
    # PostgreSQL cannot store NUL in text (SQLite can): refuse it on both.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters (\\x00)")
    return text


Name = Annotated[
    str,
    Field(min_length=1, max_length=200, examples=["Blue widget"]),
    AfterValidator(_has_no_nul),
]
Description = Annotated[
    str,
    Field(max_length=2000, examples=["A widget, but blue."]),
    AfterValidator(_has_no_nul),
]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    description: Description | None = None


class ItemUpdate(BaseModel):
    """A partial update: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _name_is_not_null(self) -> Self:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[ItemRead]
    total: int
    limit: int
    offset: int
