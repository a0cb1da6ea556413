from __future__ import annotations

import re

import yaml
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_readyz_answers_the_specs_four_keys_and_what_backs_them(
    client: TestClient, settings: Settings
) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    database = "sqlite" if settings.is_sqlite else "postgresql+psycopg://127.0.0.1:5432/"
    assert body.pop("backends")["database"].startswith(database)
    # Embedded mode: the in-process bus and executor stand in for Redis and Celery.
    assert body == {
        "status": "ready",
        "database": True,
        "redis": True,
        "celery": True,
        "workers": {},  # distributed mode lists its worker nodes
    }
    assert response.json()["backends"]["redis"] == "in-process"
    assert response.json()["backends"]["celery"] == "in-process"


def test_readyz_is_503_when_the_database_is_down(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    ctx = AppContext.build(broken)
    with TestClient(create_app(broken, ctx)) as client:
        response = client.get("/readyz")
    ctx.close()
    assert response.status_code == 503
    body = response.json()
    assert body["backends"]["database"] == "postgresql+psycopg://127.0.0.1:1/none"
    del body["backends"]
    assert body == {
        "status": "not ready",
        "database": False,
        "redis": True,
        "celery": True,
        "workers": {},
    }


def test_openapi_json_and_yaml_are_valid_and_equal(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    validate(spec)
    as_yaml = client.get("/openapi.yaml")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == spec
    assert "/api/auth/login" in spec["paths"]
    assert spec["paths"]["/api/auth/login"]["post"]["operationId"] == "auth-login"
    # Authenticated operations say how: a Bearer header (and, for streams, a query token).
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /api/auth/login, or an API key (stk_…).",
    }
    assert {"HTTPBearer": []} in spec["paths"]["/api/jobs"]["get"]["security"]
    assert "security" not in spec["paths"]["/api/auth/login"]["post"]
    stream_security = spec["paths"]["/api/jobs/{job_id}/stream"]["get"]["security"]
    assert {"APIKeyQuery": []} in stream_security


def test_swagger_ui_is_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/openapi.json" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = client.get(f"/api/docs/assets/{asset}")
        assert response.status_code == 200
        assert len(response.content) > 10_000
    # FastAPI emits OpenAPI 3.1, which only Swagger UI 5 renders.
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/api/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', bundle)
