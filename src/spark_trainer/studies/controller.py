"""The study controller: an idempotent reconcile pass, run only on the scheduling leader.

Asking Optuna for trials must happen in one process at a time (two askers would both
start the trial that fills the last slot), so the pass runs in a
loop of :class:`~spark_trainer.runtime.leader.LeaderLoops`. Everything it knows it reads from the
database each pass; a new leader (after a restart or a failover) carries on where the
last one stopped. Each pass, for every study with work left:

1. closes trials whose job has ended but whose job-end event has not been handled yet
   (``studies.outcome``, the same code the durable handler runs);
2. hands a running trial's new intermediate values to Optuna and, if the pruner says so,
   records the trial PRUNED and stops its job (its process group, as cancel does);
3. stops jobs of trials that were pruned, or of a study that ended, that still run;
4. tells Optuna every closed trial's final state (the reason as the trial's user
   attribute ``sparktrainer_reason``);
5. gives every Optuna trial without a job (the server stopped between asking and
   submitting) its job, then asks Optuna for new trials while fewer than ``parallelism``
   trial jobs are pending or running and fewer than ``n_trials`` were asked;
6. records the study's status.
"""

from __future__ import annotations

import json
import logging
import math
import time

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, CmaEsSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState
from pydantic import TypeAdapter
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.errors import SparkTrainerError
from spark_trainer.jobs import service as jobs
from spark_trainer.jobs.schemas import JobCreate
from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    ACTIVE_STUDY_STATUSES,
    FINAL_STATUSES,
    Job,
    JobKind,
    JobStatus,
    Study,
    StudyStatus,
    StudyTrial,
    TrialState,
    User,
)
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.runtime.events import JobEnded
from spark_trainer.settings import Settings
from spark_trainer.studies import space
from spark_trainer.studies.outcome import record_trial_end
from spark_trainer.studies.repository import StudyRepository, TrialWithJob
from spark_trainer.studies.schemas import ParamSpec
from spark_trainer.studies.storage import open_storage

logger = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 0.25
# fANOVA needs a few completed trials before its answer means anything, and costs more
# with every trial: while a study runs it is recomputed at most this often.
IMPORTANCE_MIN_TRIALS = 4
IMPORTANCE_INTERVAL_SECONDS = 10.0
# How many of the new points of one trial a pass asks the pruner about, at most.
PRUNE_CHECKS = 50
REASON_ATTR = "sparktrainer_reason"
JOB_ATTR = "sparktrainer_job_id"

_SPACE = TypeAdapter(dict[str, ParamSpec])
_OPTUNA_STATES = {
    TrialState.COMPLETE: OptunaState.COMPLETE,
    TrialState.PRUNED: OptunaState.PRUNED,
    TrialState.FAIL: OptunaState.FAIL,
}


class StudyController:
    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session], engine: JobEngine
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.engine = engine
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Started and stopped with the engine, on whichever process leads.
        self.loop = engine.leader_loops.add(
            "hpo.studies", self.run_pass, every=PASS_INTERVAL_SECONDS
        )
        self._storage: RDBStorage | None = None
        # Optuna study objects hold their sampler's state (TPE's random generator): kept
        # between passes, rebuilt from the storage by a new leader.
        self._studies: dict[str, optuna.Study] = {}
        self._importance_at: dict[str, float] = {}

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Releases Optuna's storage; called once the engine (and so the loop) stopped."""
        if self._storage is not None:
            self._storage.engine.dispose()
            self._storage = None
        self._studies.clear()

    def wake(self) -> None:
        self.loop.wake()

    def on_trial_ended(self, session: Session, event: JobEnded) -> None:
        """The durable job-end handler for ``trial`` jobs (``runtime.events``): records the
        outcome in the handler's transaction, and wakes this process's controller (which,
        on the leader, then tells Optuna and asks for the next trial)."""
        if record_trial_end(session, event.job_id):
            # Once committed: woken earlier, the pass would still see the trial open.
            sqlalchemy_event.listen(session, "after_commit", lambda _: self.wake(), once=True)

    @property
    def storage(self) -> RDBStorage:
        if self._storage is None:
            self._storage = open_storage(self.settings)
        return self._storage

    # --- the pass -------------------------------------------------------------------

    def run_pass(self) -> None:
        with self.session_factory() as session:
            study_ids = StudyRepository(session).ids_to_reconcile()
        for study_id in study_ids:
            if self.loop.stopping:
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
        reload = False
        for row in rows:
            job_final = row.job.status in FINAL_STATUSES
            if row.trial.state == TrialState.RUNNING and job_final:
                with self.session_factory.begin() as session:
                    reload |= record_trial_end(session, row.job.id)
            elif not job_final and (not active or row.trial.state != TrialState.RUNNING):
                self._stop_job(row.job)
            elif row.job.status == JobStatus.RUNNING and study.pruner != "none":
                reload |= self._report(study, ostudy, row)
        if reload:
            study, owner, rows = self._load(study_id)
            if study is None or owner is None:
                return
        self._tell(study, ostudy, rows)
        if study.status in ACTIVE_STUDY_STATUSES:
            self._fill(study, ostudy, owner, rows)
        else:
            self._fail_orphans(ostudy, rows, "the study ended before the trial was submitted")
        self._record_status(study, ostudy)

    def _load(self, study_id: str) -> tuple[Study | None, User | None, list[TrialWithJob]]:
        with self.session_factory() as session:
            repo = StudyRepository(session)
            study = repo.get(study_id)
            if study is None:
                return None, None, []
            owner = session.get(User, study.owner_id)
            rows = repo.trials(study_id)
            session.expunge_all()
            return study, owner, rows

    def _optuna(self, study: Study) -> optuna.Study:
        found = self._studies.get(study.id)
        if found is None:
            found = self._studies[study.id] = optuna.create_study(
                storage=self.storage,
                study_name=study.id,
                direction="maximize" if study.objective == "maximize" else "minimize",
                sampler=_sampler(study),
                pruner=_pruner(study),
                load_if_exists=True,
            )
        return found

    # --- telling Optuna what ended --------------------------------------------------

    def _tell(self, study: Study, ostudy: optuna.Study, rows: list[TrialWithJob]) -> None:
        completed = False
        for row in rows:
            trial = row.trial
            if trial.state == TrialState.RUNNING or trial.optuna_told:
                continue
            trial_id = trial.optuna_trial_id
            if self.storage.get_trial(trial_id).state == OptunaState.RUNNING:
                if study.pruner != "none" and trial.state == TrialState.COMPLETE:
                    # The pruner compares running trials with completed ones step by step:
                    # a trial that ran between two passes still needs its whole curve.
                    self._feed(study, trial, row.job.id)
                if trial.reason is not None:
                    self.storage.set_trial_user_attr(trial_id, REASON_ATTR, trial.reason)
                state = _OPTUNA_STATES[TrialState(trial.state)]
                # Optuna takes a pruned trial's value from its last intermediate value.
                value = trial.value if state == OptunaState.COMPLETE else None
                try:
                    ostudy.tell(trial.number, value, state=state)
                except RuntimeError:
                    # The grid sampler calls study.stop() once its grid is used up, which
                    # Optuna allows only inside optimize(); the state is stored before.
                    if self.storage.get_trial(trial_id).state == OptunaState.RUNNING:
                        raise
            with self.session_factory.begin() as session:
                session.execute(
                    update(StudyTrial)
                    .where(StudyTrial.study_id == study.id, StudyTrial.number == trial.number)
                    .values(optuna_told=True)
                )
            trial.optuna_told = True
            completed |= trial.state == TrialState.COMPLETE
        if completed:
            last = self._importance_at.get(study.id, 0.0)
            if time.monotonic() - last >= IMPORTANCE_INTERVAL_SECONDS:
                self._record_importance(study, ostudy)

    def _record_importance(self, study: Study, ostudy: optuna.Study) -> None:
        completed = ostudy.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
        if len(completed) < IMPORTANCE_MIN_TRIALS:
            return
        self._importance_at[study.id] = time.monotonic()
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

    def _feed(self, study: Study, trial: StudyTrial, job_id: str) -> None:
        with self.session_factory() as session:
            points = StudyRepository(session).points_after(
                job_id, study.metric, trial.reported_step
            )
        for step, value in points:
            if math.isfinite(value):
                self.storage.set_trial_intermediate_value(trial.optuna_trial_id, step, value)

    def _report(self, study: Study, ostudy: optuna.Study, row: TrialWithJob) -> bool:
        """Feeds new intermediate values to Optuna; True if the trial was pruned."""
        if row.trial.state != TrialState.RUNNING:
            return False
        with self.session_factory() as session:
            points = StudyRepository(session).points_after(
                row.job.id, study.metric, row.trial.reported_step
            )
        if not points:
            return False
        trial_id = row.trial.optuna_trial_id
        frozen: FrozenTrial = self.storage.get_trial(trial_id)
        # The pruner judges a trial at its last step. Points arrive in batches (the metrics
        # pipeline, this pass's interval), so it is asked at each new step as if the
        # values had come one by one (at most PRUNE_CHECKS of them a pass), else a trial
        # already past the steps completed trials reached could never be compared.
        checks = set(range(len(points) - 1, -1, -max(1, len(points) // PRUNE_CHECKS)))
        pruned_at: tuple[int, float] | None = None
        for index, (step, value) in enumerate(points):
            if not math.isfinite(value):
                continue
            self.storage.set_trial_intermediate_value(trial_id, step, value)
            frozen.intermediate_values[step] = value
            if index in checks and ostudy.pruner.prune(ostudy, frozen):
                pruned_at = (step, value)
                break
        last_step = pruned_at[0] if pruned_at is not None else points[-1][0]
        with self.session_factory.begin() as session:
            session.execute(
                update(StudyTrial)
                .where(StudyTrial.study_id == study.id, StudyTrial.number == row.trial.number)
                .values(reported_step=last_step)
            )
        if pruned_at is None:
            return False
        last_value = pruned_at[1]
        reason = f"pruned by the {study.pruner} pruner at step {last_step}"
        with self.session_factory.begin() as session:
            # Compare-and-set: the job may have ended (and been recorded) meanwhile.
            pruned = session.execute(
                update(StudyTrial)
                .where(
                    StudyTrial.study_id == study.id,
                    StudyTrial.number == row.trial.number,
                    StudyTrial.state == TrialState.RUNNING,
                )
                .values(state=TrialState.PRUNED, value=last_value, reason=reason)
            ).rowcount  # type: ignore[attr-defined]
        if pruned:
            logger.info(
                "trial pruned",
                extra={"study_id": study.id, "trial": row.trial.number, "job_id": row.job.id},
            )
            self._stop_job(row.job)
        return bool(pruned)

    def _stop_job(self, job: Job) -> None:
        if job.status == JobStatus.PENDING:
            self.engine.cancel_pending(job.id, "cancelled: its trial was closed")
        elif job.status == JobStatus.RUNNING and job.cancel_requested_at is None:
            self.engine.cancel_running(job.id)

    # --- asking ---------------------------------------------------------------------

    def _fill(
        self, study: Study, ostudy: optuna.Study, owner: User, rows: list[TrialWithJob]
    ) -> None:
        linked = {row.trial.number for row in rows}
        running = sum(1 for row in rows if row.job.status not in FINAL_STATUSES)
        asked = ostudy.get_trials(deepcopy=False)
        orphans = [t for t in asked if t.state == OptunaState.RUNNING and t.number not in linked]
        for orphan in sorted(orphans, key=lambda t: t.number):
            if running >= study.parallelism:
                return
            if not self._submit(study, ostudy, owner, orphan.number, orphan.params):
                return
            running += 1
        distributions = space.distributions(_SPACE.validate_python(study.search_space))
        budget = study.n_trials - len(asked)
        while running < study.parallelism and budget > 0 and not self.loop.stopping:
            trial = ostudy.ask(fixed_distributions=distributions)
            budget -= 1
            if not self._submit(study, ostudy, owner, trial.number, trial.params):
                return
            running += 1

    def _fail_orphans(self, ostudy: optuna.Study, rows: list[TrialWithJob], reason: str) -> None:
        linked = {row.trial.number for row in rows}
        open_trials = ostudy.get_trials(deepcopy=False, states=(OptunaState.RUNNING,))
        orphans = [t.number for t in open_trials if t.number not in linked]
        if not orphans:
            return
        optuna_study_id = self.storage.get_study_id_from_name(ostudy.study_name)
        for number in orphans:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(optuna_study_id, number)
            self.storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
            ostudy.tell(number, state=OptunaState.FAIL)

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
                job = jobs.submit(
                    session,
                    self.engine,
                    user,
                    data,
                    kind=JobKind.TRIAL,
                    parent_id=study.id,
                    params=params,
                )
                session.add(
                    StudyTrial(
                        study_id=study.id,
                        number=number,
                        optuna_trial_id=trial_id,
                        job_id=job.id,
                        params=params,
                        state=TrialState.RUNNING,
                        reported_step=-1,
                        optuna_told=False,
                    )
                )
                session.commit()
                job_id = job.id
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
        self.storage.set_trial_user_attr(trial_id, JOB_ATTR, job_id)
        return True

    # --- study status ---------------------------------------------------------------

    def _record_status(self, study: Study, ostudy: optuna.Study) -> None:
        with self.session_factory() as session:
            repo = StudyRepository(session)
            current = repo.get(study.id)
            if current is None or current.status not in ACTIVE_STUDY_STATUSES:
                return
            rows = repo.trials(study.id)
            session.expunge_all()
        started = [r.job.started_at for r in rows if r.job.started_at is not None]
        if current.status == StudyStatus.PENDING and started:
            with self.session_factory.begin() as session:
                session.execute(
                    update(Study)
                    .where(Study.id == study.id, Study.status == StudyStatus.PENDING)
                    .values(status=StudyStatus.RUNNING, started_at=min(started))
                )
        # A pruned trial's job may still be stopping: the study ends once it has.
        if len(rows) < current.n_trials or any(
            r.trial.state == TrialState.RUNNING
            or not r.trial.optuna_told
            or r.job.status not in FINAL_STATUSES
            for r in rows
        ):
            return
        states = [r.trial.state for r in rows]
        if TrialState.COMPLETE in states:
            self._record_importance(study, ostudy)
            self._end_study(study.id, StudyStatus.COMPLETED, None)
        else:
            failed, pruned = states.count(TrialState.FAIL), states.count(TrialState.PRUNED)
            self._end_study(
                study.id,
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
        self._studies.pop(study_id, None)
        self._importance_at.pop(study_id, None)
        logger.info("study ended", extra={"study_id": study_id, "status": str(status)})


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
