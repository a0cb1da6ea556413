"""OpenAPI as JSON and YAML, and a Swagger UI whose assets are served from this process.

The assets (Swagger UI 5, which renders OpenAPI 3.1) come from the ``fastapi-offline``
wheel; only its static files are used, so the docs page works without internet.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
import yaml
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

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
