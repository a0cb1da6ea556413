"""Bad input creates nothing; the leaderboard's JSON and CSV agree and sort; owners only."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import Evaluation, ModelVersion
from tests.conftest import Account


def _model(ctx: AppContext, owner: Account, name: str) -> str:
    model_id = new_id(IdPrefix.MODEL)
    with ctx.session_factory.begin() as session:
        session.add(ModelVersion(id=model_id, owner_id=owner.user.id, name=name, version=1))
    return model_id


def _result(
    ctx: AppContext, owner: Account, model_id: str, benchmark: str, score: float, age: int
) -> str:
    evaluation_id = new_id(IdPrefix.EVALUATION)
    name = {"mmlu": "accuracy", "coco": "AP", "safety": "refusal_rate"}[benchmark]
    with ctx.session_factory.begin() as session:
        session.add(
            Evaluation(
                id=evaluation_id,
                owner_id=owner.user.id,
                model_id=model_id,
                benchmark=benchmark,
                config={},
                status="completed",
                results={name: score},
                score=score,
                score_name=name,
                finished_at=utcnow() - timedelta(minutes=age),
            )
        )
    return evaluation_id


def _error(response: Any, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["message"], body


def test_bad_input_names_the_field_and_creates_nothing(
    client: TestClient, ctx: AppContext, alice: Account, bob: Account
) -> None:
    mine = _model(ctx, alice, "mine")
    theirs = _model(ctx, bob, "theirs")

    def post(**body: Any) -> Any:
        return client.post("/api/evaluations", json=body, headers=alice.headers)

    _error(post(model_id=mine, benchmark="hellaswag"), 400, "benchmark")
    _error(post(model_id=theirs, benchmark="mmlu"), 404, "model_id")
    _error(post(model_id="model-missing", benchmark="mmlu"), 404, "model_id")
    _error(
        post(model_id=mine, benchmark="mmlu", config={"num_shots": "five"}), 400, "config.num_shots"
    )
    _error(post(model_id=mine, benchmark="mmlu", config={"shots": 5}), 400, "config.shots")
    _error(
        post(model_id=mine, benchmark="mmlu", config={"subjects": ["astrology"]}),
        400,
        "config.subjects",
        "astrology",
    )
    _error(
        post(model_id=mine, benchmark="mmlu", config={"dataset_id": "ds-nope"}),
        404,
        "config.dataset_id",
    )
    _error(post(model_id=mine, benchmark="mmlu", config={"gpu_count": 64}), 400, "config.gpu_count")
    _error(
        post(model_id=mine, benchmark="coco", config={"task": "bbox"}),
        400,
        "config.annotations_dataset_id",
    )
    _error(
        post(model_id=mine, benchmark="safety", config={"endpoint_url": "ftp://x"}),
        400,
        "config.endpoint_url",
    )
    _error(post(model_id=mine, benchmark="mmlu", config=[1]), 400, "config")

    assert client.get("/api/evaluations", headers=alice.headers).json()["total"] == 0
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == 0


def _csv(client: TestClient, account: Account, **params: str) -> list[dict[str, str]]:
    response = client.get(
        "/api/leaderboard", params={**params, "format": "csv"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def _json(client: TestClient, account: Account, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/leaderboard", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_leaderboard_json_and_csv_agree_and_sort(
    client: TestClient, ctx: AppContext, alice: Account, bob: Account
) -> None:
    alpha, beta, gamma = (_model(ctx, alice, n) for n in ("alpha", "beta", "gamma"))
    _result(ctx, alice, alpha, "mmlu", 0.40, age=30)
    best_alpha = _result(ctx, alice, alpha, "mmlu", 0.55, age=20)  # alpha's best of three
    _result(ctx, alice, alpha, "mmlu", 0.50, age=1)
    _result(ctx, alice, beta, "mmlu", 0.70, age=10)
    _result(ctx, alice, gamma, "mmlu", 0.60, age=5)
    _result(ctx, alice, gamma, "safety", 0.90, age=2)
    hidden = _model(ctx, bob, "bobs")
    _result(ctx, bob, hidden, "mmlu", 0.99, age=3)

    board = _json(client, alice, benchmark="mmlu")
    assert [(r["model_name"], r["score"]) for r in board] == [
        ("beta", 0.70),
        ("gamma", 0.60),
        ("alpha", 0.55),
    ]
    assert board[2]["evaluation_id"] == best_alpha
    assert [r["rank"] for r in board] == [1, 2, 3]

    rows = _csv(client, alice, benchmark="mmlu")
    assert list(rows[0]) == list(board[0])  # the same columns, in the same order
    assert [{k: str(v) for k, v in r.items()} for r in board] == rows

    by_name = _json(client, alice, benchmark="mmlu", sort="name")
    assert [r["model_name"] for r in by_name] == ["alpha", "beta", "gamma"]
    by_date = _json(client, alice, benchmark="mmlu", sort="date")
    assert [r["model_name"] for r in by_date] == ["gamma", "beta", "alpha"]
    ascending = _json(client, alice, benchmark="mmlu", sort="accuracy", order="asc")
    assert [r["model_name"] for r in ascending] == ["alpha", "gamma", "beta"]

    everything = _json(client, alice)
    assert len(everything) == 4  # one row per model and benchmark
    assert {(r["model_name"], r["benchmark"]) for r in everything} >= {("gamma", "safety")}
    assert all(r["model_name"] != "bobs" for r in everything)
    assert [r["model_name"] for r in _json(client, bob)] == ["bobs"]

    _error(
        client.get("/api/leaderboard", params={"format": "xml"}, headers=alice.headers),
        400,
        "format",
    )
    _error(
        client.get("/api/leaderboard", params={"sort": "loss"}, headers=alice.headers), 400, "sort"
    )
    _error(
        client.get("/api/leaderboard", params={"benchmark": "glue"}, headers=alice.headers),
        400,
        "benchmark",
    )
    assert client.get("/api/leaderboard").status_code == 401
