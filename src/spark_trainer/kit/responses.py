"""JSON answers built from plain rows and encoded once (the request path's fast reads).

A read route declares its ``response_model`` as usual, so the OpenAPI document and the
SDKs generated from it describe the schema, but returns :func:`json_response` of plain
dicts: FastAPI sends a returned ``Response`` as is, skipping the validation of its own
output and pydantic's encoder. For a page of 20 jobs that validation, with the ORM
loading that fed it, was most of the request's CPU.

The dicts must hold what the schema would emit, in the schema's field order. orjson
writes the same bytes pydantic does for them: floats, ``None`` and nested lists alike,
and timezone-aware UTC datetimes as ``…Z`` exactly as ``kit.schemas.UTCDatetime``
(``tests/platform/test_fast_reads.py`` checks both against pydantic).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

# OPT_UTC_Z: "+00:00" written "Z", the API's one timestamp format. The database's
# UTCDateTime type answers aware UTC datetimes only; OPT_NAIVE_UTC guards the rest.
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def encode(content: Any) -> bytes:
    return orjson.dumps(content, option=_OPTIONS)


def json_response(content: Any) -> Response:
    return Response(encode(content), media_type="application/json")
