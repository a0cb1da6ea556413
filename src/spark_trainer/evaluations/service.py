"""Evaluation use cases: create (as a job), read, list; primary scores."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from spark_trainer.datasets import service as datasets
from spark_trainer.deployments import service as deployments
from spark_trainer.errors import BadRequest, NotFound, ValidationFailed
from spark_trainer.evaluations.configs import (
    CONFIGS,
    BenchmarkConfig,
    CocoConfig,
    EndpointOptions,
    SafetyConfig,
)
from spark_trainer.evaluations.repository import FINAL, EvaluationRepository
from spark_trainer.evaluations.schemas import EvaluationCreate, EvaluationRead
from spark_trainer.evaluations.spec import ModelFiles, RunSpec, StoredFile
from spark_trainer.identity import service as identity
from spark_trainer.jobs import service as jobs
from spark_trainer.jobs.schemas import JobCreate
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.models import Benchmark, Evaluation, JobKind, JobStatus, ModelVersion, User
from spark_trainer.registry import service as registry
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.storage.base import ArtifactStore, BlobNotFound

RUNNER_MODULE = "spark_trainer.evaluations.run"


def primary_score(benchmark: Benchmark, results: dict[str, Any]) -> tuple[str, float | None]:
    """The one number the leaderboard ranks by, and its name."""
    if benchmark == Benchmark.MMLU:
        name, key = "accuracy", "overall_accuracy"
    elif benchmark == Benchmark.COCO:
        name = key = "CIDEr" if results.get("task") == "captions" else "AP"
    else:
        name, key = "refusal_rate", "refusal_rate"
    value = results.get(key)
    return name, float(value) if isinstance(value, int | float) else None


def _config_error(exc: ValidationError) -> ValidationFailed:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in ("config", *error["loc"]))
        message = "field required" if error["type"] == "missing" else error["msg"]
        parts.append(f"{where}: {message}")
    return ValidationFailed("; ".join(parts))


def _stored(store: ArtifactStore, blob_hash: str, what: str) -> str:
    try:
        path = store.local_path(blob_hash)
    except BlobNotFound:
        path = None
    if path is None:
        raise BadRequest(f"{what}: its files are not readable on this server")
    return str(path)


def _dataset(
    session: Session,
    store: ArtifactStore,
    user: User,
    field: str,
    dataset_id: str,
    version: str | None,
) -> StoredFile:
    try:
        found = datasets.resolve_version(session, user, dataset_id, version)
    except NotFound as exc:
        raise NotFound(f"config.{field}: {exc.message}") from None
    return StoredFile(
        path=_stored(store, found.hash, f"config.{field}"),
        filename=found.filename,
        format=str(found.format),
    )


def _model_files(store: ArtifactStore, model: ModelVersion, field: str) -> ModelFiles:
    if not model.files:
        raise BadRequest(f"{field}: model '{model.id}' has no files")
    return ModelFiles(files={f.path: _stored(store, f.hash, field) for f in model.files})


def _resolve_endpoint(
    session: Session, user: User, model: ModelVersion, config: EndpointOptions, api_url: str
) -> tuple[str | None, bool]:
    """The OpenAI-compatible base URL to probe, and whether the job authenticates to it
    with its own token: a deployment of the caller's is reached through its SparkTrainer
    endpoint (any API process proxies it to a healthy replica), which accepts the job's
    token for its owner's deployments."""
    if config.deployment_id is None:
        return config.endpoint_url, False
    try:
        deployment = deployments.get_owned(session, user, config.deployment_id)
    except NotFound as exc:
        raise NotFound(f"config.deployment_id: {exc.message}") from None
    if deployment.model_id != model.id:
        raise BadRequest(
            f"config.deployment_id: deployment '{deployment.id}' serves model "
            f"'{deployment.model_id}', not '{model.id}'"
        )
    if deployment.status in ("stopping", "stopped", "failed"):
        raise BadRequest(
            f"config.deployment_id: deployment '{deployment.id}' is {deployment.status}"
        )
    return deployments.endpoint_urls(api_url, deployment.id)[1], True


def _inputs(
    session: Session,
    store: ArtifactStore,
    user: User,
    model: ModelVersion,
    benchmark: Benchmark,
    config: BenchmarkConfig,
    api_url: str,
) -> RunSpec:
    spec = RunSpec(
        evaluation_id=new_id(IdPrefix.EVALUATION),
        benchmark=benchmark,
        config=config.model_dump(mode="json"),
    )
    if isinstance(config, CocoConfig):
        spec.datasets["annotations"] = _dataset(
            session,
            store,
            user,
            "annotations_dataset_id",
            config.annotations_dataset_id,
            config.annotations_version,
        )
        spec.datasets["predictions"] = _dataset(
            session,
            store,
            user,
            "predictions_dataset_id",
            config.predictions_dataset_id,
            config.predictions_version,
        )
        return spec
    spec.endpoint_url, spec.endpoint_job_token = _resolve_endpoint(
        session, user, model, config, api_url
    )
    if isinstance(config, SafetyConfig):
        if config.dataset_id is not None:
            spec.datasets["probes"] = _dataset(
                session, store, user, "dataset_id", config.dataset_id, config.dataset_version
            )
    else:
        if config.dataset_id is not None:
            spec.datasets["questions"] = _dataset(
                session, store, user, "dataset_id", config.dataset_id, config.dataset_version
            )
        if config.dev_dataset_id is not None:
            spec.datasets["dev"] = _dataset(
                session,
                store,
                user,
                "dev_dataset_id",
                config.dev_dataset_id,
                config.dev_dataset_version,
            )
    if spec.endpoint_url is None:
        spec.model = _model_files(store, model, "model_id")
        if config.base_model_id is not None:
            try:
                base = registry.get_owned(session, user, config.base_model_id)
            except NotFound as exc:
                raise NotFound(f"config.base_model_id: {exc.message}") from None
            spec.base_model = _model_files(store, base, "config.base_model_id")
    return spec


def create(
    session: Session,
    engine: JobEngine,
    store: ArtifactStore,
    user: User,
    data: EvaluationCreate,
    api_url: str,
) -> Evaluation:
    """Checks everything, then records the evaluation and submits its job; any error
    leaves nothing behind (the request's transaction rolls back)."""
    try:
        model = registry.get_owned(session, user, data.model_id)
    except NotFound as exc:
        raise NotFound(f"model_id: {exc.message}") from None
    try:
        config = CONFIGS[data.benchmark].model_validate(data.config)
    except ValidationError as exc:
        raise _config_error(exc) from None
    largest = engine.capacity()
    if config.gpu_count > largest:
        raise BadRequest(
            f"config.gpu_count: {config.gpu_count} exceeds the largest node, which has "
            f"{largest} GPUs"
        )
    spec = _inputs(session, store, user, model, data.benchmark, config, api_url)
    # The job's own `python`, one its user can run (see runtime.environment.JobUser).
    command = f"python -m {RUNNER_MODULE} --spec {shlex.quote(spec.to_argument())}"
    try:
        job = jobs.submit(
            session,
            engine,
            user,
            JobCreate(
                name=f"eval-{data.benchmark}-{model.name}-v{model.version}"[:200],
                command=command,
                gpu_count=config.gpu_count,
                priority=config.priority,
                timeout_seconds=config.timeout_seconds,
                # Scored CPU-bound on machines without GPUs; the job's own threads
                # (torch's) are capped in the runner.
                environment={"TOKENIZERS_PARALLELISM": "false"},
            ),
            kind=JobKind.EVALUATION,
            parent_id=spec.evaluation_id,
        )
    except BadRequest as exc:
        raise BadRequest(f"config.{exc.message}") from None
    return EvaluationRepository(session).add(
        Evaluation(
            id=spec.evaluation_id,
            owner_id=user.id,
            model_id=model.id,
            benchmark=data.benchmark,
            config=spec.config,
            job_id=job.id,
            status=JobStatus.PENDING,
        )
    )


def get_owned(session: Session, user: User, evaluation_id: str) -> Evaluation:
    return identity.get_owned(session, user, Evaluation, evaluation_id, "Evaluation")


def list_evaluations(
    session: Session,
    user: User,
    *,
    model_id: str | None,
    benchmark: Benchmark | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Evaluation], int]:
    return EvaluationRepository(session).page(
        user, model_id=model_id, benchmark=benchmark, limit=limit, offset=offset
    )


def read_many(session: Session, evaluations: Sequence[Evaluation]) -> list[EvaluationRead]:
    repo = EvaluationRepository(session)
    open_jobs = [e.job_id for e in evaluations if e.job_id and e.status not in FINAL]
    statuses = repo.job_statuses(open_jobs)
    progress = repo.progress([e.job_id for e in evaluations if e.job_id])
    return [_read(e, statuses, progress) for e in evaluations]


def read(session: Session, evaluation: Evaluation) -> EvaluationRead:
    return read_many(session, [evaluation])[0]


def _read(
    evaluation: Evaluation, statuses: dict[str, str], progress: dict[str, dict[str, int]]
) -> EvaluationRead:
    status = evaluation.status
    if status not in FINAL and evaluation.job_id in statuses:
        # Until the collector has recorded the outcome, the job's state is the news; a
        # job that has just ended is still "running" as far as its results go.
        job_status = statuses[evaluation.job_id]
        status = JobStatus.RUNNING if job_status in FINAL else job_status
    counts = progress.get(evaluation.job_id or "", {})
    return EvaluationRead(
        id=evaluation.id,
        model_id=evaluation.model_id,
        benchmark=evaluation.benchmark,
        status=status,
        results=evaluation.results,
        config=evaluation.config,
        score=evaluation.score,
        score_name=evaluation.score_name,
        job_id=evaluation.job_id,
        status_reason=evaluation.status_reason,
        questions_done=counts.get("questions_done"),
        questions_total=counts.get("questions_total"),
        owner_id=evaluation.owner_id,
        created_at=evaluation.created_at,
        finished_at=evaluation.finished_at,
    )
