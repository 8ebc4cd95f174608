"""Base model and the generic page shared by every wire format."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class WireModel(BaseModel):
    """Accepts both the API's spelling (aliases) and Python names; keeps unknown fields.

    Unknown fields are kept (``extra="allow"``) because the upstream models list only the minimum
    the API sends; dropping the rest would lose data we may later need.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", serialize_by_alias=True)

    def to_wire(self) -> dict:
        """The JSON body as the API spells it, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Pageable(WireModel):
    offset: int | None = None
    page_number: int | None = Field(default=None, alias="pageNumber")
    page_size: int | None = Field(default=None, alias="pageSize")
    paged: bool | None = None
    unpaged: bool | None = None


class Sort(WireModel):
    sorted: bool | None = None
    unsorted: bool | None = None
    empty: bool | None = None


class Page(WireModel, Generic[T]):
    """A Spring-style page, as RosDomofon returns for entrances, services and messages."""

    content: list[T] = Field(default_factory=list)
    total_elements: int | None = Field(default=None, alias="totalElements")
    total_pages: int | None = Field(default=None, alias="totalPages")
    number: int | None = None
    size: int | None = None
    number_of_elements: int | None = Field(default=None, alias="numberOfElements")
    first: bool | None = None
    last: bool | None = None
    empty: bool | None = None
    pageable: Pageable | None = None
    sort: Sort | None = None
