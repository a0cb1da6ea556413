from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from spark_trainer.errors import ValidationFailed
from spark_trainer.kit.schemas import Schema, UTCDatetime
from spark_trainer.models import DatasetFormat

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def validate_name(value: str) -> str:
    if not value:
        raise ValidationFailed("name: must not be empty")
    if not _NAME.match(value):
        raise ValidationFailed(
            "name: must be at most 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


class DatasetVersionRead(Schema):
    version: str = Field(description="v1.0.0 for the first upload, then v1.1.0, v1.2.0, …")
    hash: str = Field(description="md5 of the file's bytes, as DVC 3 computes it.")
    created_at: UTCDatetime
    size: int = Field(description="Bytes.")
    id: str
    filename: str | None = Field(description="The uploaded file's name (metadata only).")
    format: DatasetFormat
    record_count: int | None = Field(
        description="JSONL and text: lines; CSV and TSV: rows after the header; "
        "null for other formats."
    )


class DatasetVersionDetail(DatasetVersionRead):
    preview: list[Any] | None = Field(
        description="JSONL: the first records, parsed; CSV and TSV: the first rows keyed by "
        "the header (from the first 16 KiB of the file); null for other formats."
    )


class DatasetVersionList(Schema):
    versions: list[DatasetVersionRead] = Field(description="Oldest first.")


class DatasetRead(Schema):
    id: str
    name: str
    owner_id: str
    created_at: UTCDatetime
    updated_at: UTCDatetime = Field(description="When the latest version was added.")
    version_count: int
    latest_version: DatasetVersionRead


class DatasetDetail(DatasetRead):
    latest_version: DatasetVersionDetail
