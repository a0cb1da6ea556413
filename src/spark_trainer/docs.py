"""OpenAPI as JSON and YAML, and a Swagger UI whose assets are served from this process.

The assets (Swagger UI 5, which renders OpenAPI 3.1) come from the ``fastapi-offline``
wheel; only its static files are used, so the docs page works without internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi_offline
import yaml
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles

from spark_trainer.deps import get_admin_reader, get_admin_user, get_upload_user

DOCS_ASSETS = "/api/docs/assets"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIR), name="swagger-assets")

    @app.get("/openapi.yaml", include_in_schema=False)
    async def openapi_yaml(request: Request) -> Response:
        return Response(
            yaml.safe_dump(request.app.openapi(), sort_keys=False),
            media_type="application/yaml",
        )

    @app.get("/api/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="SparkTrainer API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )


# --- errors in the OpenAPI document ------------------------------------------------------
# FastAPI documents a 422 the app never sends (exception_handlers answers 400) and none of
# the errors it does send. ``describe_errors`` rewrites the generated document once, from
# what each route's dependencies say it can answer, so no route lists them by hand.

ERROR_SCHEMA_NAME = "Error"
_ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
_ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR_SCHEMA_NAME,
    "type": "object",
    "description": "Every error answer has this shape.",
    "required": ["error", "message", "status"],
    "properties": {
        "error": {"type": "string", "description": "The HTTP reason phrase"},
        "message": {"type": "string", "description": "What went wrong, for a person"},
        "status": {"type": "integer", "description": "The HTTP status code"},
    },
}
_DESCRIPTIONS = {
    400: "Invalid input: a parameter or the body fails validation",
    401: "Missing, invalid or expired credentials",
    403: "Administrator role required",
    404: "No such resource (others' resources answer 404 too)",
    408: "The request body stopped arriving",
    413: "The request body exceeds the limit",
    429: "Rate limit exceeded; retry after Retry-After seconds",
}
_WITH_BODY = {"POST", "PUT", "PATCH"}


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _error_statuses(route: APIRoute, operation: dict[str, Any]) -> set[int]:
    """The errors any request to ``route`` may meet before or around its handler."""
    # The control-character rule runs on every route's path and query.
    statuses = {400}
    calls = {sub.call for sub in _dependencies(route.dependant)}
    if operation.get("security"):
        statuses |= {401, 429}
    if get_admin_user in calls or get_admin_reader in calls:
        statuses.add(403)
    if get_upload_user in calls:
        statuses.add(429)
    if route.param_convertors:
        statuses.add(404)
    if (route.methods or set()) & _WITH_BODY:
        statuses |= {408, 413}
    return statuses


def describe_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    """Rewrites ``schema`` in place: no 422; each operation's errors with the Error schema."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components[ERROR_SCHEMA_NAME] = _ERROR_SCHEMA
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(context.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in _error_statuses(route, operation):
                responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
            for code, response in responses.items():
                if int(code) >= 400 and "content" not in response:
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
