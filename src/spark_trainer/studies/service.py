"""Study use cases: create, read, list, cancel. The trials themselves are driven by
``studies.controller``, which is the only code that talks to Optuna."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from sqlalchemy.orm import Session

from spark_trainer.datasets import service as datasets
from spark_trainer.errors import BadRequest, Conflict, ValidationFailed
from spark_trainer.experiments import service as experiments
from spark_trainer.experiments.schemas import ExperimentCreate
from spark_trainer.identity import service as identity
from spark_trainer.jobs import service as jobs
from spark_trainer.jobs.engine import JobEngine
from spark_trainer.jobs.schemas import JobCreate
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import FINAL_STATUSES, Study, StudyStatus, StudyTrial, User
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
    largest = max(engine.capacity().values(), default=0)
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
        objective=study.objective,  # type: ignore[arg-type]
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
    """Stops the study's pending and running trials; the controller then records them as
    failed in Optuna and stops any trial that was being submitted meanwhile."""
    study = get_owned(session, user, study_id)
    if study.status not in (StudyStatus.PENDING, StudyStatus.RUNNING):
        raise Conflict(f"Study '{study_id}' has already ended ({study.status})")
    owner = session.get_one(User, study.owner_id)
    # Jobs first: each cancel commits in a transaction of the engine's own, which on SQLite
    # must not wait behind this request's write below.
    cancel_trial_jobs(session, engine, owner, StudyRepository(session).trials(study.id))
    study.status = StudyStatus.CANCELLED
    study.status_reason = "cancelled by user"
    study.finished_at = utcnow()
    session.flush()
    return study


def cancel_trial_jobs(
    session: Session, engine: JobEngine, owner: User, trials: Sequence[TrialWithJob]
) -> None:
    for row in trials:
        if row.job.status in FINAL_STATUSES:
            continue
        with contextlib.suppress(Conflict):  # it ended by itself meanwhile
            jobs.cancel(session, engine, owner, row.job.id)
