"""The dashboard: the built single-page app (``web/dist``) served at ``/``.

Its route is added after every other one and declines the API's own paths, so it never
shadows them: an unknown ``/api/…`` path still answers the spec's JSON 404. Any other
GET is a file of the build when one matches, else ``index.html``, whose client-side router
shows the page (``/jobs/job-…`` opened directly or reloaded). Without a build, ``/``
answers a short page saying how to make one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from spark_trainer.errors import NotFound

# Paths the dashboard must never answer, even for a route that does not exist.
RESERVED = ("api", "ws", "healthz", "readyz", "openapi.json", "openapi.yaml")
# Vite names its bundles by content hash: they never change, so browsers keep them.
IMMUTABLE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SparkTrainer</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>SparkTrainer</h1>
<p>The API is running, but the dashboard has not been built.</p>
<p>Install Node.js 20 and run <code>scripts/setup</code> (or
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>), then reload this page.</p>
<p>The API documentation is at <a href="/api/docs">/api/docs</a>.</p>
</body></html>
"""


class _DashboardRoute(Route):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return Match.NONE, {}
        first = scope["path"].lstrip("/").split("/", 1)[0]
        if first in RESERVED:
            return Match.NONE, {}
        return super().matches(scope)


def install(app: FastAPI, web_dir: Path) -> None:
    root = web_dir.resolve()

    async def dashboard(request: Request) -> Response:
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT)
        path = request.path_params["path"]
        if "\x00" in path:
            raise NotFound("No such dashboard file")
        candidate = (root / path).resolve()
        if path and candidate.is_relative_to(root) and candidate.is_file():
            cache = IMMUTABLE if path.startswith("assets/") else "no-cache"
            return FileResponse(candidate, headers={"Cache-Control": cache})
        if path.startswith("assets/"):
            # A stale page asking for a bundle of an older build: not the app's HTML.
            raise NotFound("No such dashboard file")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.routes.append(
        _DashboardRoute("/{path:path}", dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    )
