"""Job use cases: submit, read, cancel, logs, metrics."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy.orm import Session

from spark_trainer.activity.record import record
from spark_trainer.datasets import service as datasets
from spark_trainer.db.reads import ReadConnection
from spark_trainer.errors import BadRequest, Conflict, Unauthorized, resource_not_found
from spark_trainer.executor.local import STDERR_FILE, STDOUT_FILE
from spark_trainer.experiments import service as experiments
from spark_trainer.identity import service as identity
from spark_trainer.identity.tokens import api_key_digest
from spark_trainer.identity.viewer import Viewer
from spark_trainer.jobs.repository import JobRepository, JobRows
from spark_trainer.jobs.schemas import JobCreate, JobEventRead, JobRead
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.pagination import Paging, page_payload
from spark_trainer.metrics.group_commit import Authorize, IngestState
from spark_trainer.models import Job, JobKind, JobStatus, User
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.runtime.jobfiles import JOB_TOKEN_PREFIX

LogStream = Literal["stdout", "stderr"]
# How long a cancel request waits for a running job to exit before answering.
CANCEL_WAIT_SECONDS = 5.0


def submit(
    session: Session,
    engine: JobEngine,
    user: User,
    data: JobCreate,
    *,
    kind: str = JobKind.TRAINING,
    parent_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> Job:
    """Queues a job. Domain services pass ``kind`` (``trial``, ``replica``,
    ``evaluation``), ``parent_id`` (their study, deployment or evaluation) and ``params``;
    the job's end reaches their handler through ``runtime.events``."""
    largest = engine.capacity()
    if data.gpu_count > largest:
        hint = (
            " (no GPUs were found on this machine; set SPARKTRAINER_GPUS=4 for a virtual "
            "inventory, or SPARKTRAINER_GPUS=4x80GB to give each GPU's memory)"
            if largest == 0
            else ""
        )
        raise BadRequest(
            f"gpu_count {data.gpu_count} exceeds the largest node, which has {largest} GPUs{hint}"
        )
    if data.working_dir is not None and not Path(data.working_dir).is_dir():
        raise BadRequest(f"working_dir '{data.working_dir}' is not a directory")
    if data.experiment_id is not None:
        experiments.get_owned(session, user, data.experiment_id)
    dataset_version_id = None
    if data.dataset_id is not None:
        dataset_version_id = datasets.resolve_version(
            session, user, data.dataset_id, data.dataset_version
        ).id
    elif data.dataset_version is not None:
        raise BadRequest("dataset_version needs dataset_id")
    job = JobRepository(session).add(
        Job(
            id=new_id(IdPrefix.JOB),
            owner_id=user.id,
            name=data.name,
            command=data.command,
            gpu_count=data.gpu_count,
            priority=data.priority,
            environment=data.environment,
            experiment_id=data.experiment_id,
            dataset_version_id=dataset_version_id,
            model_name=data.model_name,
            timeout_seconds=data.timeout_seconds,
            working_dir=data.working_dir,
            max_retries=data.max_retries,
            status=JobStatus.PENDING,
            gpus=[],
            kind=kind,
            parent_id=parent_id,
            params=params,
        )
    )
    record(
        session,
        kind="job.submitted",
        job_id=job.id,
        owner_id=user.id,
        name=job.name,
        status=JobStatus.PENDING,
    )
    after_commit(session, engine.wake_scheduler)
    return job


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Runs ``callback`` once the request's transaction has committed (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)


def get_job(session: Session, job_id: str) -> Job:
    job = JobRepository(session).get(job_id)
    if job is None:
        raise resource_not_found("Job", job_id)
    return job


def get_owned(session: Session, user: User, job_id: str) -> Job:
    return identity.get_owned(session, user, Job, job_id, "Job")


def read(session: Session, job: Job) -> JobRead:
    result = JobRead.model_validate(job)
    if job.status == JobStatus.PENDING:
        ahead = JobRepository(session).ahead_in_queue(job)
        result.pending_reason = _pending_reason(job.pending_reason, ahead)
    return result


def _pending_reason(recorded: str | None, ahead: int) -> str:
    reason = recorded or "waiting for the scheduler's next pass"
    if ahead:
        reason = f"{reason}; {ahead} job{'s' if ahead != 1 else ''} ahead in the queue"
    return reason


# --- the request path's reads (db.reads): plain dicts in the schemas' shapes ------------

JOB_FIELDS = tuple(JobRead.model_fields)
EVENT_FIELDS = tuple(JobEventRead.model_fields)


def job_page(
    conn: ReadConnection, *, viewer: Viewer, status: JobStatus | None, paging: Paging
) -> dict[str, Any]:
    """``Page[JobRead]`` of the viewer's jobs (every job for an admin), newest first."""
    rows = JobRows(conn)
    items, total = rows.page(
        viewer, JOB_FIELDS, status=status, limit=paging.limit, offset=paging.offset
    )
    _explain_pending(rows, items)
    return page_payload(items, total, paging)


def job_detail(conn: ReadConnection, *, viewer: Viewer, job_id: str) -> dict[str, Any]:
    """``JobDetail``: the job with its status history; 404 unless ``viewer`` may see it."""
    rows = JobRows(conn)
    job = rows.with_events(job_id, JOB_FIELDS, EVENT_FIELDS)
    if job is None:
        raise resource_not_found("Job", job_id)
    identity.ensure_owner(viewer, job["owner_id"], "Job", job_id)
    _explain_pending(rows, [job])
    return job


def _explain_pending(rows: JobRows, jobs: list[dict[str, Any]]) -> None:
    pending = [job for job in jobs if job["status"] == JobStatus.PENDING]
    if not pending:
        return
    ahead = rows.ahead_in_queue([job["id"] for job in pending])
    for job in pending:
        job["pending_reason"] = _pending_reason(job["pending_reason"], ahead.get(job["id"], 0))


def cancel(session: Session, engine: JobEngine, user: User, job_id: str) -> Job:
    """Cancels a pending job at once; stops a running one and waits a little for it.

    Works through any API process: the request is recorded in the database and delivered
    to the process supervising the job. The request's session only reads here: the engine
    makes every status change in its own compare-and-set transaction, because the
    scheduler may be acting on the same job. While waiting for the process, the request
    holds no pooled connection (its read transaction ends first).
    """
    job = get_owned(session, user, job_id)
    if JobStatus(job.status).is_final:
        raise Conflict(f"Job '{job_id}' has already {_ended_verb(job.status)}")
    if job.status == JobStatus.PENDING:
        engine.cancel_pending(job_id, "cancelled by user")
        session.refresh(job)
    if job.status == JobStatus.RUNNING:
        engine.cancel_running(job_id)
        session.commit()  # returns the connection to the pool; nothing was written
        engine.wait_ended(job_id, CANCEL_WAIT_SECONDS)
        session.refresh(job)
    return job


def _ended_verb(status: str) -> str:
    return {"completed": "completed", "failed": "failed", "cancelled": "been cancelled"}[status]


# --- logs ----------------------------------------------------------------------------

LOG_FILES: dict[str, str] = {"stdout": STDOUT_FILE, "stderr": STDERR_FILE}
LOG_POLL_SECONDS = 0.1


def log_path(job: Job, stream: LogStream) -> Path | None:
    return Path(job.job_dir) / LOG_FILES[stream] if job.job_dir else None


def read_log(
    path: Path | None, *, offset: int | None, tail_lines: int | None, max_bytes: int
) -> tuple[bytes, int, int]:
    """A slice of a log: (content, its start offset, the file's size)."""
    if path is None or not path.exists():
        return b"", 0, 0
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if tail_lines is not None and offset is None:
            start = _tail_start(handle, size, tail_lines)
        else:
            start = min(offset or 0, size)
        handle.seek(start)
        return handle.read(min(max_bytes, size - start)), start, size


def _tail_start(handle: BinaryIO, size: int, lines: int) -> int:
    """Offset where the last ``lines`` lines begin, reading backwards in blocks."""
    block = 64 * 1024
    position = size
    found = 0
    while position > 0:
        step = min(block, position)
        position -= step
        handle.seek(position)
        chunk = handle.read(step)
        # A trailing newline ends the last line rather than starting an empty one.
        end = len(chunk) - 1 if position + step == size and chunk.endswith(b"\n") else len(chunk)
        index = end
        while True:
            index = chunk.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found == lines:
                return position + index + 1
    return 0


# --- metrics ingestion ----------------------------------------------------------------


def check_job_token(job: Job, credential: str) -> None:
    """A job's own token (``stj_…``) may report metrics for that job only, while it runs."""
    digest = job.ingest_token_digest
    if (
        not credential.startswith(JOB_TOKEN_PREFIX)
        or digest is None
        or not hmac.compare_digest(digest, api_key_digest(credential))
    ):
        raise Unauthorized("Invalid job token")


def job_token_owner(session: Session, credential: str) -> User:
    """The (active) owner of the running job whose own token ``credential`` is."""
    job = JobRepository(session).running_with_token(api_key_digest(credential))
    owner = session.get(User, job.owner_id) if job is not None else None
    if owner is None or not owner.is_active:
        raise Unauthorized("Invalid job token")
    return owner


def ingest_authorizer(job_id: str, credential: str, user: User | None) -> Authorize:
    """The check a metrics POST must pass against its job's state, which the metrics
    writer reads for a whole group of requests at once: the job's own token (``user`` is
    None), or its owner (``user``, already authenticated), while the job runs.

    The credential is checked before the job's existence is revealed: a job token that
    fits no job and an unknown job id are the same 401 to someone without an account.
    """
    if user is None:
        digest = api_key_digest(credential)

        def by_token(state: IngestState | None) -> None:
            if (
                state is None
                or state.token_digest is None
                or not hmac.compare_digest(state.token_digest, digest)
            ):
                raise Unauthorized("Invalid job token")
            _ensure_ingesting(job_id, state.status)

        return by_token

    def by_owner(state: IngestState | None) -> None:
        if state is None:
            raise resource_not_found("Job", job_id)
        identity.ensure_owner(user, state.owner_id, "Job", job_id)
        _ensure_ingesting(job_id, state.status)

    return by_owner


def _ensure_ingesting(job_id: str, status: str) -> None:
    if status != JobStatus.RUNNING:
        raise Conflict(f"Job '{job_id}' is {status}; metrics are accepted while it runs")


def ensure_running(job: Job) -> None:
    _ensure_ingesting(job.id, job.status)
