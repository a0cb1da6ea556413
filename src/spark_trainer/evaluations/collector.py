"""Recording an evaluation's outcome once its job has ended.

:func:`record_outcome` is an idempotent function of (session, job id): it may run any
number of times, from any process, and records once. Today a reconcile pass
(:func:`run_pass`, hosted on the scheduling leader) and the durable job-end handler
(:func:`on_job_ended`) both call it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.evaluations.repository import FINAL, EvaluationRepository
from spark_trainer.evaluations.service import primary_score
from spark_trainer.evaluations.spec import RESULTS_FILE
from spark_trainer.jobs import service as jobs
from spark_trainer.kit.time import utcnow
from spark_trainer.models import Evaluation, Job, JobStatus
from spark_trainer.runtime.events import JobEnded
from spark_trainer.runtime.jobfiles import OUTPUT_DIR
from spark_trainer.runtime.leader import LeaderLoops
from spark_trainer.runtime.periodic import PeriodicThread

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_RESULTS_BYTES = 8 * 1024 * 1024


class ResultsError(ValueError):
    pass


def _read_results(job: Job) -> dict[str, Any]:
    if job.job_dir is None:
        raise ResultsError("the job has no directory")
    path = Path(job.job_dir) / OUTPUT_DIR / RESULTS_FILE
    if not path.is_file() or path.is_symlink():
        raise ResultsError(f"the job wrote no {RESULTS_FILE}")
    if path.stat().st_size > MAX_RESULTS_BYTES:
        raise ResultsError(f"{RESULTS_FILE} is larger than {MAX_RESULTS_BYTES} bytes")
    try:
        results = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{RESULTS_FILE} is not JSON: {exc}") from None
    if not isinstance(results, dict):
        raise ResultsError(f"{RESULTS_FILE} does not hold an object")
    return results


def _no_constants(name: str) -> float:
    # NaN and Infinity are not JSON; the API could not return them.
    raise ResultsError(f"{RESULTS_FILE} contains {name}")


def _failure_reason(job: Job) -> str:
    reason = job.status_reason or f"the job {job.status}"
    tail, _, _ = jobs.read_log(
        jobs.log_path(job, "stderr"), offset=None, tail_lines=1, max_bytes=2000
    )
    last = tail.decode("utf-8", "replace").strip()
    return f"{reason}: {last}" if last else reason


def record_outcome(session: Session, job_id: str) -> bool:
    """Copies the ended job's results (or its failure) onto its evaluation.

    Returns whether anything was recorded: False for a job that is no evaluation's,
    still running, or already recorded.
    """
    evaluation = EvaluationRepository(session).for_job_locked(job_id)
    if evaluation is None or evaluation.status in FINAL:
        return False
    job = session.get(Job, job_id)
    if job is None or job.status not in FINAL:
        return False
    evaluation.finished_at = job.finished_at or utcnow()
    if job.status == JobStatus.COMPLETED:
        try:
            results = _read_results(job)
        except ResultsError as exc:
            _fail(evaluation, f"the job completed without usable results: {exc}")
            return True
        name, value = primary_score(evaluation.benchmark, results)
        evaluation.results = results
        evaluation.score_name = name
        evaluation.score = value if value is None or math.isfinite(value) else None
        evaluation.status = JobStatus.COMPLETED
        evaluation.status_reason = None
    else:
        evaluation.status = job.status
        evaluation.status_reason = _failure_reason(job)
    session.flush()
    logger.info(
        "evaluation recorded",
        extra={"evaluation_id": evaluation.id, "job_id": job_id, "status": evaluation.status},
    )
    return True


def on_job_ended(session: Session, event: JobEnded) -> None:
    """The durable job-end handler (``runtime.events``) for evaluation jobs."""
    record_outcome(session, event.job_id)


def _fail(evaluation: Evaluation, reason: str) -> None:
    evaluation.status = JobStatus.FAILED
    evaluation.status_reason = reason
    evaluation.results = None
    evaluation.score = None


def run_pass(session_factory: sessionmaker[Session]) -> int:
    """Records every ended job's evaluation not yet recorded; returns how many."""
    with session_factory() as session:
        repo = EvaluationRepository(session)
        pending = repo.uncollected_ended_jobs()
        orphans = [e.id for e in repo.orphaned()]
    recorded = 0
    for job_id in pending:
        with session_factory.begin() as session:
            recorded += record_outcome(session, job_id)
    for evaluation_id in orphans:
        with session_factory.begin() as session:
            evaluation = session.get(Evaluation, evaluation_id)
            if evaluation is not None and evaluation.status not in FINAL:
                _fail(evaluation, "its job was deleted")
                evaluation.finished_at = utcnow()
                recorded += 1
    return recorded


def host_collector(session_factory: sessionmaker[Session], loops: LeaderLoops) -> PeriodicThread:
    """Runs :func:`run_pass` every second on the scheduling leader: a safety net behind
    the job-end handler (:func:`on_job_ended`) that also fails evaluations whose job was
    deleted."""
    return loops.add("evaluations.results", lambda: run_pass(session_factory), every=POLL_SECONDS)
