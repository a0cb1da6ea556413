"""Study use cases: create, read, list, cancel. The trials themselves are driven by
``studies.controller`` on the scheduling leader, the only code that talks to Optuna."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError
from sqlalchemy.orm import Session

from spark_trainer.datasets import service as datasets
from spark_trainer.errors import BadRequest, Conflict, ValidationFailed
from spark_trainer.experiments import service as experiments
from spark_trainer.experiments.schemas import ExperimentCreate
from spark_trainer.identity import service as identity
from spark_trainer.jobs import service as jobs
from spark_trainer.jobs.schemas import JobCreate
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    ACTIVE_STUDY_STATUSES,
    FINAL_STATUSES,
    Study,
    StudyStatus,
    StudyTrial,
    User,
)
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.studies import space
from spark_trainer.studies.repository import StudyRepository, TrialWithJob
from spark_trainer.studies.schemas import StudyCreate, StudyDetail, StudyRead, TrialRead


def create(
    session: Session, engine: JobEngine, user: User, data: StudyCreate, wake: Callable[[], None]
) -> Study:
    """Checks everything a trial will need, then records the study; nothing is written if
    any of it is wrong. Optuna's side is created by the controller's first pass."""
    space.check_search_space(data.search_space)
    space.check_command(data.command, data.search_space)
    if data.sampler == "grid":
        points = space.grid_size(data.search_space)
        if data.n_trials > points:
            raise ValidationFailed(
                f"n_trials {data.n_trials} exceeds the grid's {points} points (sampler grid)"
            )
    largest = engine.capacity()
    if data.gpu_count > largest:
        raise BadRequest(
            f"gpu_count {data.gpu_count} exceeds the largest node, which has {largest} GPUs"
        )
    _check_job_fields(data)
    dataset_version = None
    if data.dataset_id is not None:
        dataset_version = datasets.resolve_version(
            session, user, data.dataset_id, data.dataset_version
        ).version
    elif data.dataset_version is not None:
        raise BadRequest("dataset_version needs dataset_id")
    study_id = new_id(IdPrefix.STUDY)
    if data.experiment_id is not None:
        experiment_id = experiments.get_owned(session, user, data.experiment_id).id
    else:
        experiment_id = experiments.create(
            session,
            user,
            ExperimentCreate(
                name=f"{data.name} ({study_id})",
                description=f"Trials of hyperparameter study {study_id}",
                tags={"hpo_study": study_id},
                metric_goals={data.metric: data.objective},
            ),
        ).id
    study = StudyRepository(session).add(
        Study(
            id=study_id,
            owner_id=user.id,
            name=data.name,
            objective=data.objective,
            search_space={
                name: spec.model_dump(exclude_none=True) for name, spec in data.search_space.items()
            },
            n_trials=data.n_trials,
            parallelism=data.parallelism,
            command=data.command,
            metric=data.metric,
            metric_value=data.metric_value,
            gpu_count=data.gpu_count,
            environment=data.environment,
            timeout_seconds=data.timeout_seconds,
            experiment_id=experiment_id,
            dataset_id=data.dataset_id,
            dataset_version=dataset_version,
            sampler=data.sampler,
            seed=data.seed,
            pruner=data.pruner,
            pruner_startup_trials=data.pruner_startup_trials,
            pruner_warmup_steps=data.pruner_warmup_steps,
            status=StudyStatus.PENDING,
        )
    )
    jobs.after_commit(session, wake)
    return study


def _check_job_fields(data: StudyCreate) -> None:
    # The job rules (environment names, limits) are the jobs domain's; a trial that could
    # never be submitted is refused now rather than failing later.
    try:
        JobCreate(
            name=data.name,
            command=data.command,
            gpu_count=data.gpu_count,
            environment=data.environment,
            timeout_seconds=data.timeout_seconds,
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
        ) from None


def get_owned(session: Session, user: User, study_id: str) -> Study:
    return identity.get_owned(session, user, Study, study_id, "Study")


def list_studies(
    session: Session, user: User, *, limit: int, offset: int
) -> tuple[list[StudyRead], int]:
    repo = StudyRepository(session)
    studies, total = repo.page(user, limit=limit, offset=offset)
    return _reads(repo, studies), total


def _reads(repo: StudyRepository, studies: Sequence[Study]) -> list[StudyRead]:
    ids = [s.id for s in studies]
    finished = repo.finished_counts(ids)
    best = repo.best_trials(studies)
    return [_read(s, finished.get(s.id, 0), best.get(s.id)) for s in studies]


def _read(study: Study, finished: int, best: StudyTrial | None) -> StudyRead:
    return StudyRead(
        id=study.id,
        name=study.name,
        status=study.status,
        status_reason=study.status_reason,
        objective=study.objective,
        metric=study.metric,
        n_trials=finished,
        n_trials_requested=study.n_trials,
        parallelism=study.parallelism,
        best_value=best.value if best is not None else None,
        best_params=best.params if best is not None else None,
        experiment_id=study.experiment_id,
        optuna_study_name=study.id,
        owner_id=study.owner_id,
        created_at=study.created_at,
        started_at=study.started_at,
        finished_at=study.finished_at,
    )


def detail(session: Session, study: Study) -> StudyDetail:
    repo = StudyRepository(session)
    (base,) = _reads(repo, [study])
    return StudyDetail(
        **base.model_dump(),
        search_space=study.search_space,
        sampler=study.sampler,
        pruner=study.pruner,
        trials=[_trial(t) for t in repo.trials(study.id)],
        parameter_importance=study.parameter_importance,
    )


def _trial(row: TrialWithJob) -> TrialRead:
    return TrialRead(
        number=row.trial.number,
        state=row.trial.state,
        params=row.trial.params,
        value=row.trial.value,
        reason=row.trial.reason,
        job_id=row.job.id,
        job_status=row.job.status,
        started_at=row.job.started_at,
        finished_at=row.job.finished_at,
    )


def cancel(session: Session, engine: JobEngine, user: User, study_id: str) -> Study:
    """Ends the study and, once that is committed, stops its pending and running trials
    (through the engine, from any process); their trials are then closed as FAIL."""
    study = get_owned(session, user, study_id)
    if study.status not in ACTIVE_STUDY_STATUSES:
        raise Conflict(f"Study '{study_id}' has already ended ({study.status})")
    open_jobs = [
        row.job.id
        for row in StudyRepository(session).trials(study.id)
        if row.job.status not in FINAL_STATUSES
    ]
    study.status = StudyStatus.CANCELLED
    study.status_reason = "cancelled by user"
    study.finished_at = utcnow()
    session.flush()
    # After the commit: the engine changes job statuses in transactions of its own, which
    # on SQLite would wait behind this request's write.
    jobs.after_commit(session, lambda: stop_jobs(engine, open_jobs))
    return study


def stop_jobs(engine: JobEngine, job_ids: Sequence[str]) -> None:
    for job_id in job_ids:
        # Not pending any more (placed meanwhile, or ended): a running one gets the cancel.
        if not engine.cancel_pending(job_id, "cancelled by user"):
            engine.cancel_running(job_id)
