"""The model registry: versions of named models, their files, tags and lineage.

A job that completes with files in ``SPARKTRAINER_OUTPUT_DIR`` registers a new version of
its model name; a completed job can also be registered by hand. Files go into the
content-addressed artifact store, so a version's bytes never change after registration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_trainer.errors import BadRequest, Conflict, resource_not_found
from spark_trainer.identity import service as identity
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.models import (
    Dataset,
    DatasetVersion,
    Evaluation,
    Experiment,
    Job,
    JobStatus,
    MetricSummary,
    ModelFile,
    ModelVersion,
    User,
)
from spark_trainer.registry.repository import ModelRepository
from spark_trainer.registry.schemas import (
    DatasetVersionRef,
    EvaluationRef,
    ExperimentRef,
    JobRef,
    Lineage,
    ModelDetail,
    ModelFileRead,
    ModelRead,
)
from spark_trainer.registry.upload import ReceivedModel
from spark_trainer.runtime.jobfiles import OUTPUT_DIR
from spark_trainer.storage.base import ArtifactStore

logger = logging.getLogger(__name__)

MODEL_EVALUATIONS_SHOWN = 50
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def model_name_for(job: Job) -> str:
    """The job's ``model_name``, or its name made fit for one ("my run #2" → "my-run-2")."""
    if job.model_name:
        return job.model_name
    return _NOT_IN_NAME.sub("-", job.name).strip("-.")[:200] or job.id


def output_files(job: Job) -> list[tuple[str, Path]]:
    """(relative path, file) for every regular file the job left in its output directory.

    Symbolic links are not followed: a model holds what the job wrote, not what a link
    points at elsewhere on the machine.
    """
    if job.job_dir is None:
        return []
    root = Path(job.job_dir) / OUTPUT_DIR
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if any(
            parent.is_symlink() for parent in path.relative_to(root).parents if parent != Path()
        ):
            continue
        found.append((path.relative_to(root).as_posix(), path))
    return found


def register_from_job(
    session: Session,
    store: ArtifactStore,
    job: Job,
    *,
    name: str | None = None,
    description: str | None = None,
) -> ModelVersion:
    if job.status != JobStatus.COMPLETED:
        raise Conflict(f"Job '{job.id}' is {job.status}; only a completed job's output registers")
    files = output_files(job)
    if not files:
        raise BadRequest(f"Job '{job.id}' wrote no files to its output directory")
    repo = ModelRepository(session)
    model_name = name or model_name_for(job)
    stored = [(relative, store.put_file(path)) for relative, path in files]
    final_metrics = {
        summary.name: summary.latest
        for summary in session.scalars(select(MetricSummary).where(MetricSummary.job_id == job.id))
    }
    model = ModelVersion(
        id=new_id(IdPrefix.MODEL),
        owner_id=job.owner_id,
        name=model_name,
        version=repo.next_version(job.owner_id, model_name),
        description=description,
        source_job_id=job.id,
        experiment_id=job.experiment_id,
        dataset_version_id=job.dataset_version_id,
        metrics=final_metrics,
        total_size=sum(info.size for _, info in stored),
        files=[ModelFile(path=rel, size=info.size, hash=info.hash) for rel, info in stored],
    )
    return repo.add(model)


def register_upload(session: Session, user: User, upload: ReceivedModel) -> ModelVersion:
    """Records files already in the store (see ``upload.py``) as the next version of the
    caller's model of that name; it has no source job, so no lineage."""
    repo = ModelRepository(session)
    name = upload.fields["name"]
    model = ModelVersion(
        id=new_id(IdPrefix.MODEL),
        owner_id=user.id,
        name=name,
        version=repo.next_version(user.id, name),
        description=upload.fields.get("description") or None,
        metrics={},
        total_size=sum(info.size for _, info in upload.files),
        files=[ModelFile(path=rel, size=info.size, hash=info.hash) for rel, info in upload.files],
    )
    return repo.add(model)


def register_completed_job(session: Session, store: ArtifactStore, job_id: str) -> None:
    """The job engine's completion hook: registers the output of a job that wrote any."""
    job = session.get(Job, job_id)
    if job is None or job.status != JobStatus.COMPLETED or not output_files(job):
        return
    if ModelRepository(session).for_job(job_id) is not None:
        return
    # An evaluation's job writes results, not a model. (Job.kind says so directly once
    # the engine core adds it.)
    if session.scalar(select(Evaluation.id).where(Evaluation.job_id == job_id)) is not None:
        return
    model = register_from_job(session, store, job)
    logger.info(
        "model registered",
        extra={
            "model_id": model.id,
            "model": model.name,
            "version": model.version,
            "job_id": job_id,
        },
    )


def get_owned(session: Session, user: User, model_id: str) -> ModelVersion:
    return identity.get_owned(session, user, ModelVersion, model_id, "Model")


def list_models(
    session: Session, user: User, *, name: str | None, tag: str | None, limit: int, offset: int
) -> tuple[Sequence[ModelVersion], int]:
    return ModelRepository(session).page(user, name=name, tag=tag, limit=limit, offset=offset)


def tag(session: Session, model: ModelVersion, tag_name: str) -> ModelVersion:
    ModelRepository(session).set_tag(model, tag_name)
    session.refresh(model, ["tags"])
    return model


def untag(session: Session, model: ModelVersion, tag_name: str) -> ModelVersion:
    if not ModelRepository(session).remove_tag(model, tag_name):
        raise resource_not_found("Tag", tag_name)
    session.refresh(model, ["tags"])
    return model


def find_file(model: ModelVersion, path: str) -> ModelFile:
    for model_file in model.files:
        if model_file.path == path:
            return model_file
    raise resource_not_found("File", path)


def read(model: ModelVersion) -> ModelRead:
    return ModelRead(
        id=model.id,
        name=model.name,
        version=model.version,
        description=model.description,
        owner_id=model.owner_id,
        tags=[t.tag for t in model.tags],
        source_job_id=model.source_job_id,
        experiment_id=model.experiment_id,
        dataset_version_id=model.dataset_version_id,
        metrics=model.metrics,
        total_size=model.total_size,
        file_count=len(model.files),
        created_at=model.created_at,
    )


def detail(session: Session, model: ModelVersion) -> ModelDetail:
    job = session.get(Job, model.source_job_id) if model.source_job_id else None
    experiment = session.get(Experiment, model.experiment_id) if model.experiment_id else None
    dataset_ref = None
    if model.dataset_version_id:
        row = session.execute(
            select(DatasetVersion, Dataset)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.id == model.dataset_version_id)
        ).one_or_none()
        if row is not None:
            version, dataset = row
            dataset_ref = DatasetVersionRef(
                dataset_id=dataset.id, name=dataset.name, version=version.version, hash=version.hash
            )
    return ModelDetail(
        **read(model).model_dump(),
        files=[ModelFileRead.model_validate(f) for f in model.files],
        lineage=Lineage(
            job=JobRef(id=job.id, name=job.name, status=job.status) if job else None,
            experiment=ExperimentRef(id=experiment.id, name=experiment.name)
            if experiment
            else None,
            dataset=dataset_ref,
        ),
        evaluations=_evaluations(session, model),
    )


def _evaluations(session: Session, model: ModelVersion) -> list[EvaluationRef]:
    rows = session.scalars(
        select(Evaluation)
        .where(Evaluation.model_id == model.id)
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
        .limit(MODEL_EVALUATIONS_SHOWN)
    )
    return [EvaluationRef.model_validate(e) for e in rows]
