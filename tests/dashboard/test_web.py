"""The dashboard's files at ``/``, with the single-page app's fallback, never over the API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings

INDEX = "<!doctype html><title>SparkTrainer</title><div id=root></div>"


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, AppContext.build(settings)))


def test_serves_the_build_and_falls_back_to_index(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)")
    (dist / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    with _client(settings_factory(web_dir=dist)) as client:
        for path in ("/", "/jobs", "/jobs/job-123", "/experiments/exp-1?tab=runs"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.text == INDEX and page.headers["cache-control"] == "no-cache"
        bundle = client.get("/assets/index-abc123.js")
        assert bundle.text == "console.log(1)"
        assert "immutable" in bundle.headers["cache-control"]
        assert client.get("/favicon.svg").text == "<svg/>"
        assert client.head("/").status_code == 200

        # A bundle of an older build is a 404, not the app's HTML.
        gone = client.get("/assets/index-old.js")
        assert gone.status_code == 404 and gone.json()["status"] == 404
        # File names never reach outside the build.
        for escape in ("/..%2Fsecret.txt", "/assets/..%2F..%2Fsecret.txt", "/%2e%2e/secret.txt"):
            response = client.get(escape)
            assert "outside the build" not in response.text, escape
        assert client.get("/assets/a%00b.js").status_code == 404

        # The API's paths keep their own answers.
        assert client.get("/healthz").json()["status"] == "healthy"
        assert client.get("/openapi.json").json()["openapi"].startswith("3.")
        assert "swagger" in client.get("/api/docs").text.lower()
        for method, path in (("GET", "/api/nope"), ("POST", "/api/nope"), ("GET", "/ws/x")):
            response = client.request(method, path)
            assert response.status_code == 404, (method, path)
            assert set(response.json()) == {"error", "message", "status"}
        assert client.get("/api/jobs").status_code == 401
        # Writes to a dashboard path are not the dashboard's.
        assert client.post("/jobs").status_code in (404, 405)


def test_without_a_build_says_how_to_make_one(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    with _client(settings_factory(web_dir=tmp_path / "missing")) as client:
        page = client.get("/jobs")
        assert page.status_code == 200
        assert "npm run build" in page.text and "scripts/setup" in page.text
