"""Routes answered through ``routing.Route``'s precompiled plan answer exactly what FastAPI's
own dependency solver answers, and no route escapes the text rule.

The comparison is differential: the same requests are sent to one app twice, once as it
runs (the plan) and once with a dependency override installed, which sends every route
through FastAPI's standard handler. The override replaces a function no route uses, so
the two runs differ only in who solves the dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.experiments.endpoints import router as experiments_router
from spark_trainer.identity.endpoints import users_router
from spark_trainer.jobs.endpoints import router as jobs_router
from spark_trainer.routing import Route, _compile, _Param, api_router
from spark_trainer.settings import Settings
from tests.conftest import Account


def _unused() -> None:
    """A dependency no route has: overriding it changes nothing but the solver."""


@pytest.fixture
def bare_client(settings: Settings, ctx: AppContext) -> Iterator[TestClient]:
    # Without the lifespan: no scheduler changes the job between the two runs.
    yield TestClient(create_app(settings, ctx))


def _answers(client: TestClient, requests: list[tuple[str, dict[str, str]]]) -> list[object]:
    answers: list[object] = []
    for url, headers in requests:
        response = client.get(url, headers=headers)
        answers.append((url, response.status_code, response.json()))
    return answers


def test_the_plan_answers_what_fastapi_answers(bare_client: TestClient, admin: Account) -> None:
    experiment = bare_client.post("/api/experiments", json={"name": "e"}, headers=admin.headers)
    assert experiment.status_code == 201
    runs = f"/api/experiments/{experiment.json()['id']}/runs"
    job = bare_client.post(
        "/api/jobs",
        json={
            "name": "j",
            "command": "true",
            "gpu_count": 0,
            "experiment_id": experiment.json()["id"],
        },
        headers=admin.headers,
    )
    assert job.status_code == 201
    job_id = job.json()["id"]
    requests = [
        ("/api/jobs?limit=5", admin.headers),
        (f"/api/jobs/{job_id}", admin.headers),
        ("/api/jobs/no-such-job", admin.headers),
        ("/api/jobs?limit=abc&offset=-1", admin.headers),  # two invalid parameters, one 400
        ("/api/jobs?limit=0", admin.headers),
        ("/api/jobs?status=bogus", admin.headers),
        ("/api/jobs?name=a%00b", admin.headers),  # the text rule
        ("/api/users?limit=2", admin.headers),
        ("/api/users", {}),  # no credentials
        ("/api/users", {"Authorization": "Bearer not-a-token"}),
        ("/api/jobs", {"Authorization": "Basic abc"}),
        ("/api/jobs?status=pending&offset=0&limit=200", admin.headers),
        ("/api/jobs?limit=", admin.headers),  # present but empty: invalid, not the default
        ("/api/jobs?limit=201&status=", admin.headers),
        (f"{runs}?sort=name&order=asc&limit=3", admin.headers),
        (f"{runs}?sort=metric:loss", admin.headers),
        (f"{runs}?order=sideways&limit=x", admin.headers),
        ("/api/experiments/no-such-experiment/runs", admin.headers),
    ]
    planned = _answers(bare_client, requests)
    app = bare_client.app
    assert hasattr(app, "dependency_overrides")
    app.dependency_overrides[_unused] = _unused
    try:
        standard = _answers(bare_client, requests)
    finally:
        app.dependency_overrides.clear()
    assert planned == standard
    statuses = [status for _, status, _ in planned]  # type: ignore[misc]
    # fmt: off
    assert statuses == [
        200, 200, 404, 400, 400, 400, 400, 200, 401, 401, 401,
        200, 400, 400, 200, 200, 400, 404,
    ]
    # fmt: on


def test_the_fast_reads_are_solved_by_the_plan() -> None:
    """A regression guard: a dependency the plan cannot solve (a session, a plain ``def``)
    added to a fast read would silently send it back through FastAPI's solver."""
    routes = {
        (route.path, method): route
        for router in (users_router, jobs_router, experiments_router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    for key in [
        ("/api/users", "GET"),
        ("/api/jobs", "GET"),
        ("/api/jobs/{job_id}", "GET"),
        ("/api/experiments/{experiment_id}/runs", "GET"),
    ]:
        route = routes[key]
        assert isinstance(route, Route)
        plan = _compile(route.dependant)
        assert plan is not None, key
        # Their parameters are all scalars, parsed without FastAPI's per-request work.
        nodes = [plan]
        while nodes:
            node = nodes.pop()
            assert all(isinstance(p, _Param) for p in (*node.path, *node.query)), key
            nodes.extend(node.children)


def test_a_router_without_a_prefix_matches_its_routes_added_later() -> None:
    """A domain router declines paths outside its routes' literal parts, worked out again
    when routes are added after it has matched a request."""
    router = api_router(tags=["test"])

    @router.get("/api/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    app = create_app(Settings(data_dir="/nonexistent"))
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/api/things/a").json() == {"thing": "a"}
    assert client.get("/api/others/b").status_code == 404

    @router.get("/api/others/{other_id}")
    async def other(other_id: str) -> dict[str, str]:
        return {"other": other_id}

    app.include_router(router)
    assert client.get("/api/others/b").json() == {"other": "b"}


def test_every_route_runs_the_text_rule(settings: Settings, ctx: AppContext) -> None:
    app = create_app(settings, ctx)
    plain = APIRouter()

    @plain.get("/api/plain")
    async def plain_route() -> None:
        """Never served."""

    with pytest.raises(TypeError, match="api_router"):
        app.include_router(plain)

    routed = api_router(tags=["test"])

    @routed.get("/api/routed")
    async def routed_route() -> None:
        """Never served."""

    with pytest.raises(TypeError, match="dependencies"):
        app.include_router(routed, dependencies=[Depends(_unused)])
