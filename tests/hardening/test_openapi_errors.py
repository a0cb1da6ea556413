"""Item 7: the OpenAPI document describes the errors the app really sends."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from spark_trainer.settings import Settings

ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_no_422_and_every_error_has_the_error_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "message", "status"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, operation in _operations(spec):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        assert "400" in responses, (method, path)
        for code, response in responses.items():
            # /readyz's 503 is its readiness report, not an error.
            if int(code) >= 400 and (path, code) != ("/readyz", "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == ERROR_REF, (method, path, code)
        if operation.get("security"):
            assert {"401", "429"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if method in {"POST", "PATCH"}:
            assert "413" in responses, (method, path)


def test_the_real_statuses_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "403" in paths["/api/users"]["get"]["responses"]
    assert {"401", "429"} <= set(paths["/api/auth/login"]["post"]["responses"])
    assert "409" in paths["/api/experiments"]["post"]["responses"]
    ingest = paths["/api/jobs/{job_id}/metrics"]["post"]
    assert ingest["security"] == [{"HTTPBearer": []}]
    assert {"401", "404", "409", "503"} <= set(ingest["responses"])
    # The multipart routes' JSON alternative resolves (it was a dangling $ref).
    register = paths["/api/models"]["post"]["requestBody"]["content"]["application/json"]
    assert "$ref" not in register["schema"] and "job_id" in register["schema"]["properties"]


def test_enforced_constraints_are_in_the_schema(client: TestClient, settings: Settings) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    runs = {
        p["name"]: p["schema"]
        for p in paths["/api/experiments/{experiment_id}/runs"]["get"]["parameters"]
    }
    assert runs["sort"]["pattern"] == "^(created_at|started_at|finished_at|name|status|metric:.+)$"
    tags = {p["name"]: p["schema"] for p in paths["/api/experiments"]["get"]["parameters"]}
    assert tags["tag"]["anyOf"][0]["items"]["pattern"] == "^[^:]+:.*$"
    jobs = {p["name"]: p["schema"] for p in paths["/api/jobs"]["get"]["parameters"]}
    assert jobs["offset"]["maximum"] == 2**31 - 1
    upload = paths["/api/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["required"] == ["name", "file"]


def test_a_400_is_what_the_document_promises(client: TestClient, alice: Any) -> None:
    # What FastAPI would have answered 422 is a 400 in the Error shape.
    response = client.get(
        "/api/experiments/exp-x/runs", params={"sort": "bogus"}, headers=alice.headers
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error", "message", "status"}
