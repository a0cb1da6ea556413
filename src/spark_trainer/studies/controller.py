"""The study driver: an idempotent reconcile pass over database state, run by a loop thread.

Each pass looks at every study with work left and, from what the database says now:

1. closes trials whose job has ended: COMPLETE with the metric's reported value, FAIL when
   the job failed or reported no value (the reason is kept as the Optuna trial's user
   attribute ``sparktrainer_reason``);
2. hands a running trial's new intermediate values to the pruner and, if it says so, tells
   Optuna PRUNED and stops the job through the jobs cancel path;
3. gives every Optuna trial that has no job yet (the server stopped between asking and
   submitting) its job, then asks Optuna for new trials while fewer than ``parallelism``
   trial jobs are pending or running and fewer than ``n_trials`` were asked;
4. records the study's status.

Every step checks Optuna's and the database's state before acting, so a pass interrupted
anywhere (a crash, a restart) is finished by the next one, in this process or another.

On SQLite, Optuna's storage writes the same file through its own connections: no step
holds a write transaction of ours while Optuna is called.
"""

from __future__ import annotations

import json
import logging
import math
import threading

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, CmaEsSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage
from optuna.trial import TrialState as OptunaState
from pydantic import TypeAdapter
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.errors import SparkTrainerError
from spark_trainer.jobs import service as jobs
from spark_trainer.jobs.engine import JobEngine
from spark_trainer.jobs.schemas import JobCreate
from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    ACTIVE_STUDY_STATUSES,
    FINAL_STATUSES,
    JobStatus,
    Study,
    StudyStatus,
    StudyTrial,
    TrialState,
    User,
)
from spark_trainer.settings import Settings
from spark_trainer.studies import space
from spark_trainer.studies.repository import StudyRepository, TrialWithJob
from spark_trainer.studies.schemas import ParamSpec
from spark_trainer.studies.service import cancel_trial_jobs

logger = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 0.25
# fANOVA needs a few completed trials before its answer means anything.
IMPORTANCE_MIN_TRIALS = 4
REASON_ATTR = "sparktrainer_reason"
JOB_ATTR = "sparktrainer_job_id"

_SPACE = TypeAdapter(dict[str, ParamSpec])


def optuna_storage(database_url: str) -> RDBStorage:
    """Optuna's RDB storage on SparkTrainer's own database.

    ``skip_compatibility_check``: the database's ``alembic_version`` table records
    SparkTrainer's migrations, not Optuna's, so Optuna's own version check must be skipped
    (by anyone opening the storage, see the README).
    """
    engine_kwargs: dict[str, object] = (
        {"connect_args": {"timeout": 30}}
        if database_url.startswith("sqlite")
        else {"pool_pre_ping": True}
    )
    return RDBStorage(database_url, engine_kwargs=engine_kwargs, skip_compatibility_check=True)


class StudyController:
    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session], engine: JobEngine
    ) -> None:
        self.database_url = settings.effective_database_url
        self.session_factory = session_factory
        self.engine = engine
        self._storage: RDBStorage | None = None
        self._studies: dict[str, optuna.Study] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="hpo-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._storage is not None:
            self._storage.engine.dispose()
            self._storage = None
        self._studies.clear()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(PASS_INTERVAL_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.run_pass()
            except Exception:
                logger.exception("study pass failed")
                self._stopping.wait(1.0)

    @property
    def storage(self) -> RDBStorage:
        if self._storage is None:
            self._storage = optuna_storage(self.database_url)
        return self._storage

    # --- the pass -------------------------------------------------------------------

    def run_pass(self) -> None:
        with self.session_factory() as session:
            study_ids = StudyRepository(session).ids_to_reconcile()
        for study_id in study_ids:
            if self._stopping.is_set():
                return
            try:
                self.reconcile(study_id)
            except Exception:
                # One study's trouble must not hold the others up; the next pass retries.
                logger.exception("reconciling a study failed", extra={"study_id": study_id})

    def reconcile(self, study_id: str) -> None:
        study, owner, rows = self._load(study_id)
        if study is None or owner is None:
            return
        ostudy = self._optuna(study)
        active = study.status in ACTIVE_STUDY_STATUSES
        for row in rows:
            job_final = row.job.status in FINAL_STATUSES
            if row.trial.state == TrialState.RUNNING and job_final:
                self._close(study, ostudy, row)
            elif not job_final and (not active or row.trial.state != TrialState.RUNNING):
                # The study ended, or the trial was pruned, but its job still runs (a cancel
                # interrupted, or a trial submitted while the study was being cancelled).
                self._stop_job(owner, row)
            elif row.job.status == JobStatus.RUNNING and study.pruner != "none":
                self._report(study, ostudy, owner, row)
        if active:
            self._fill(study, ostudy, owner)
        self._record_status(study_id)

    def _load(self, study_id: str) -> tuple[Study | None, User | None, list[TrialWithJob]]:
        with self.session_factory() as session:
            repo = StudyRepository(session)
            study = repo.get(study_id)
            if study is None:
                return None, None, []
            return study, session.get(User, study.owner_id), repo.trials(study_id)

    def _optuna(self, study: Study) -> optuna.Study:
        found = self._studies.get(study.id)
        if found is None:
            found = self._studies[study.id] = optuna.create_study(
                storage=self.storage,
                study_name=study.id,
                direction=study.objective,
                sampler=_sampler(study),
                pruner=_pruner(study),
                load_if_exists=True,
            )
        return found

    # --- closing trials -------------------------------------------------------------

    def _close(self, study: Study, ostudy: optuna.Study, row: TrialWithJob) -> None:
        value: float | None = None
        state, reason = TrialState.FAIL, row.job.status_reason or f"job {row.job.status}"
        if row.job.status == JobStatus.COMPLETED:
            with self.session_factory() as session:
                value = _reported_value(study, StudyRepository(session), row.job.id)
            if value is None:
                reason = f"reported no value of '{study.metric}'"
            elif not math.isfinite(value):
                reason, value = f"reported a non-finite value of '{study.metric}'", None
            else:
                state, reason = TrialState.COMPLETE, None
        trial_id = row.trial.optuna_trial_id
        if self.storage.get_trial(trial_id).state == OptunaState.RUNNING:
            if reason is not None:
                self.storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
            ostudy.tell(
                row.trial.number,
                value,
                state=OptunaState.COMPLETE if state == TrialState.COMPLETE else OptunaState.FAIL,
            )
        self._record_trial(row.trial, state, value, reason)
        if state == TrialState.COMPLETE:
            self._record_importance(study, ostudy)

    def _record_trial(
        self, trial: StudyTrial, state: TrialState, value: float | None, reason: str | None
    ) -> None:
        with self.session_factory.begin() as session:
            session.execute(
                update(StudyTrial)
                .where(
                    StudyTrial.study_id == trial.study_id,
                    StudyTrial.number == trial.number,
                    StudyTrial.state == TrialState.RUNNING,
                )
                .values(state=state, value=value, reason=reason)
            )

    def _record_importance(self, study: Study, ostudy: optuna.Study) -> None:
        completed = ostudy.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
        if len(completed) < IMPORTANCE_MIN_TRIALS:
            return
        try:
            importance = optuna.importance.get_param_importances(ostudy)
        except (RuntimeError, ValueError):
            # Too little variety yet (every trial with the same parameters, say).
            logger.debug("parameter importance not computable yet", exc_info=True)
            return
        with self.session_factory.begin() as session:
            session.execute(
                update(Study)
                .where(Study.id == study.id)
                .values(parameter_importance={k: float(v) for k, v in importance.items()})
            )

    # --- pruning --------------------------------------------------------------------

    def _report(self, study: Study, ostudy: optuna.Study, owner: User, row: TrialWithJob) -> None:
        with self.session_factory() as session:
            points = StudyRepository(session).points_after(
                row.job.id, study.metric, row.trial.reported_step
            )
        if not points:
            return
        trial_id = row.trial.optuna_trial_id
        if self.storage.get_trial(trial_id).state != OptunaState.RUNNING:
            return
        for step, value in points:
            if math.isfinite(value):
                self.storage.set_trial_intermediate_value(trial_id, step, value)
        last_step = points[-1][0]
        with self.session_factory.begin() as session:
            session.execute(
                update(StudyTrial)
                .where(StudyTrial.study_id == study.id, StudyTrial.number == row.trial.number)
                .values(reported_step=last_step)
            )
        frozen = self.storage.get_trial(trial_id)
        if not ostudy.pruner.prune(ostudy, frozen):
            return
        reason = f"pruned by the {study.pruner} pruner at step {last_step}"
        self.storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
        # Optuna takes a pruned trial's value from its last intermediate value.
        ostudy.tell(row.trial.number, state=OptunaState.PRUNED)
        self._record_trial(
            row.trial, TrialState.PRUNED, self.storage.get_trial(trial_id).value, reason
        )
        self._stop_job(owner, row)

    def _stop_job(self, owner: User, row: TrialWithJob) -> None:
        with self.session_factory() as session:
            cancel_trial_jobs(session, self.engine, owner, [row])

    # --- asking ---------------------------------------------------------------------

    def _fill(self, study: Study, ostudy: optuna.Study, owner: User) -> None:
        with self.session_factory() as session:
            rows = StudyRepository(session).trials(study.id)
        linked = {row.trial.number for row in rows}
        running = sum(1 for row in rows if row.job.status not in FINAL_STATUSES)
        asked = ostudy.get_trials(deepcopy=False)
        orphans = [t for t in asked if t.state == OptunaState.RUNNING and t.number not in linked]
        distributions = space.distributions(_SPACE.validate_python(study.search_space))
        for orphan in sorted(orphans, key=lambda t: t.number):
            if running >= study.parallelism:
                return
            if not self._submit(study, ostudy, owner, orphan.number, orphan.params):
                return
            running += 1
        budget = study.n_trials - len(asked)
        while running < study.parallelism and budget > 0 and not self._stopping.is_set():
            trial = ostudy.ask(fixed_distributions=distributions)
            budget -= 1
            if not self._submit(study, ostudy, owner, trial.number, trial.params):
                return
            running += 1

    def _submit(
        self,
        study: Study,
        ostudy: optuna.Study,
        owner: User,
        number: int,
        params: dict[str, object],
    ) -> bool:
        optuna_study_id = self.storage.get_study_id_from_name(study.id)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(optuna_study_id, number)
        data = JobCreate(
            name=f"{study.name}-trial-{number}",
            command=space.render_command(study.command, params),
            gpu_count=study.gpu_count,
            environment=study.environment,
            experiment_id=study.experiment_id,
            dataset_id=study.dataset_id,
            dataset_version=study.dataset_version,
            timeout_seconds=study.timeout_seconds,
        ).model_copy(
            # Set past the job schema's checks: these platform variables are the study's.
            update={
                "environment": {**study.environment, **_trial_environment(study, number, params)}
            }
        )
        try:
            with self.session_factory() as session:
                user = session.get_one(User, owner.id)
                # ENGINE-CORE: once Job has kind/parent_id/params, submit with
                # kind="trial", parent_id=study.id, params=params.
                job = jobs.submit(session, self.engine, user, data)
                session.add(
                    StudyTrial(
                        study_id=study.id,
                        number=number,
                        optuna_trial_id=trial_id,
                        job_id=job.id,
                        params=params,
                        state=TrialState.RUNNING,
                        reported_step=-1,
                    )
                )
                session.commit()
                callbacks = session.info.pop("after_commit", [])
        except SparkTrainerError as exc:
            # The trial cannot run (its experiment or dataset was deleted, the node shrank):
            # neither can the next one, so the study stops here.
            reason = f"trial {number} could not be submitted: {exc.message}"
            self.storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
            ostudy.tell(number, state=OptunaState.FAIL)
            self._end_study(study.id, StudyStatus.FAILED, reason)
            return False
        for callback in callbacks:
            callback()
        self.storage.set_trial_user_attr(trial_id, JOB_ATTR, job.id)
        return True

    # --- study status ---------------------------------------------------------------

    def _record_status(self, study_id: str) -> None:
        with self.session_factory() as session:
            repo = StudyRepository(session)
            study = repo.get(study_id)
            if study is None or study.status not in ACTIVE_STUDY_STATUSES:
                return
            rows = repo.trials(study_id)
        started = [r.job.started_at for r in rows if r.job.started_at is not None]
        if study.status == StudyStatus.PENDING and started:
            with self.session_factory.begin() as session:
                session.execute(
                    update(Study)
                    .where(Study.id == study_id, Study.status == StudyStatus.PENDING)
                    .values(status=StudyStatus.RUNNING, started_at=min(started))
                )
        if len(rows) < study.n_trials or any(r.trial.state == TrialState.RUNNING for r in rows):
            return
        states = [r.trial.state for r in rows]
        if TrialState.COMPLETE in states:
            self._end_study(study_id, StudyStatus.COMPLETED, None)
        else:
            failed, pruned = states.count(TrialState.FAIL), states.count(TrialState.PRUNED)
            self._end_study(
                study_id,
                StudyStatus.FAILED,
                f"no trial completed ({failed} failed, {pruned} pruned)",
            )

    def _end_study(self, study_id: str, status: StudyStatus, reason: str | None) -> None:
        with self.session_factory.begin() as session:
            session.execute(
                update(Study)
                .where(Study.id == study_id, Study.status.in_(list(ACTIVE_STUDY_STATUSES)))
                .values(status=status, status_reason=reason, finished_at=utcnow())
            )
        logger.info("study ended", extra={"study_id": study_id, "status": str(status)})


def _reported_value(study: Study, repo: StudyRepository, job_id: str) -> float | None:
    summary = repo.summary(job_id, study.metric)
    if summary is None:
        return None
    if study.metric_value == "last":
        return summary.latest
    return summary.max if study.objective == "maximize" else summary.min


def _trial_environment(study: Study, number: int, params: dict[str, object]) -> dict[str, str]:
    return {
        "SPARKTRAINER_STUDY_ID": study.id,
        "SPARKTRAINER_TRIAL_NUMBER": str(number),
        "SPARKTRAINER_TRIAL_PARAMS": json.dumps(params),
    }


def _sampler(study: Study) -> BaseSampler:
    if study.sampler == "random":
        return RandomSampler(seed=study.seed)
    if study.sampler == "grid":
        return GridSampler(space.grid(_SPACE.validate_python(study.search_space)), seed=study.seed)
    if study.sampler == "cmaes":
        return CmaEsSampler(seed=study.seed)
    return TPESampler(seed=study.seed)


def _pruner(study: Study) -> BasePruner:
    if study.pruner == "median":
        return MedianPruner(
            n_startup_trials=study.pruner_startup_trials, n_warmup_steps=study.pruner_warmup_steps
        )
    if study.pruner == "hyperband":
        return HyperbandPruner()
    return NopPruner()
