"""Base classes for the API's pydantic schemas, kept apart from the ORM tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from spark_trainer.kit.text import check_text

if TYPE_CHECKING:
    # Only named in a signature: at run time it would bring FastAPI into every program
    # that reads a schema (the evaluation job's among them).
    from spark_trainer.kit.pagination import Paging


def _iso_z(value: datetime) -> str:
    # One wire format for every timestamp: UTC, ISO-8601, "Z" suffix.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


T = TypeVar("T")

UTCDatetime = Annotated[datetime, PlainSerializer(_iso_z, return_type=str, when_used="json")]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class InputSchema(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        # Every string of the body, including dict keys and list items; nested input
        # schemas have checked their own fields already.
        _check_strings(value)
        return value


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_strings(item)


class Page(Schema, Generic[T]):
    """The envelope every list endpoint returns."""

    items: list[T]
    total: int = Field(description="Number of items matching the filters, ignoring paging.")
    limit: int
    offset: int

    @classmethod
    def of(cls, items: Sequence[T], total: int, paging: Paging) -> Self:
        return cls(items=list(items), total=total, limit=paging.limit, offset=paging.offset)
