"""Deployment use cases: create, read, scale, stop, and the endpoint's keys.

Services only record intent in the database (desired replicas, a stop request); the
replica supervisor (``supervisor.py``) turns that intent into jobs, health checks and
restarts, so any API process may take any request.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from spark_trainer.deployments.backends import Backend, missing_executable
from spark_trainer.deployments.repository import DeploymentRepository
from spark_trainer.deployments.schemas import (
    DeploymentCreate,
    DeploymentKeyCreated,
    DeploymentKeyRead,
    DeploymentRead,
    ReplicaRead,
)
from spark_trainer.errors import BadRequest, Conflict, NotFound, resource_not_found
from spark_trainer.identity import service as identity
from spark_trainer.identity.tokens import api_key_digest
from spark_trainer.jobs.service import after_commit
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    Deployment,
    DeploymentKey,
    DeploymentStatus,
    ModelVersion,
    ReplicaState,
    User,
)
from spark_trainer.registry import service as registry
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.storage.base import ArtifactStore

DEPLOYMENT_KEY_PREFIX = "stdk_"
ADAPTER_CONFIG = "adapter_config.json"

Wake = Callable[[], None]


def get_owned(session: Session, user: User, deployment_id: str) -> Deployment:
    return identity.get_owned(session, user, Deployment, deployment_id, "Deployment")


def create(
    session: Session,
    jobs: JobEngine,
    artifacts: ArtifactStore,
    user: User,
    data: DeploymentCreate,
    wake: Wake,
) -> Deployment:
    model = registry.get_owned(session, user, data.model_id)
    largest = jobs.capacity()
    if data.gpu_count > largest:
        raise BadRequest(
            f"gpu_count: {data.gpu_count} exceeds the largest node, which has {largest} GPUs"
        )
    if data.backend != Backend.TRANSFORMERS and data.gpu_count < 1:
        raise BadRequest(f"gpu_count: the {data.backend} backend needs at least one GPU")
    deployment = Deployment(
        id=new_id(IdPrefix.DEPLOYMENT),
        owner_id=user.id,
        name=data.name,
        model_id=model.id,
        backend=data.backend,
        base_model=adapter_base(session, artifacts, user, model),
        replicas=data.replicas,
        gpu_count=data.gpu_count,
        status=DeploymentStatus.PENDING,
    )
    missing = missing_executable(data.backend)
    if missing is not None:
        # Fail at once and say why, rather than start replicas that can only exit 127.
        deployment.status = DeploymentStatus.FAILED
        deployment.status_reason = f"{missing} is not installed on node {jobs.node}"
        deployment.stopped_at = utcnow()
    DeploymentRepository(session).add(deployment)
    if missing is None:
        after_commit(session, wake)
    return deployment


def adapter_base(
    session: Session, artifacts: ArtifactStore, user: User, model: ModelVersion
) -> str | None:
    """For a LoRA adapter (peft's ``adapter_config.json`` at the top), the base it needs:
    a registered model id of the owner's, or a directory on this node."""
    config_file = next((f for f in model.files if f.path == ADAPTER_CONFIG), None)
    if config_file is None:
        return None
    try:
        config = json.loads(artifacts.read_bytes(config_file.hash))
        base = str(config["base_model_name_or_path"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest(
            f"model_id: {ADAPTER_CONFIG} of model '{model.id}' names no base_model_name_or_path"
        ) from None
    if base.startswith(f"{IdPrefix.MODEL}-"):
        try:
            return registry.get_owned(session, user, base).id
        except NotFound:
            pass
    elif Path(base).is_absolute() and Path(base).is_dir():
        return base
    raise BadRequest(
        f"model_id: the adapter's base model '{base}' is neither a registered model of yours "
        "nor a directory on this node"
    )


def list_deployments(
    session: Session, user: User, *, limit: int, offset: int
) -> tuple[Sequence[Deployment], int]:
    return DeploymentRepository(session).page(user, limit=limit, offset=offset)


def scale(
    session: Session, user: User, deployment_id: str, replicas: int, wake: Wake
) -> Deployment:
    deployment = get_owned(session, user, deployment_id)
    status = DeploymentStatus(deployment.status)
    if status.is_final or status == DeploymentStatus.STOPPING:
        raise Conflict(f"Deployment '{deployment_id}' is {status}; it cannot be scaled")
    deployment.replicas = replicas
    after_commit(session, wake)
    return deployment


def stop(session: Session, user: User, deployment_id: str, wake: Wake) -> Deployment:
    """Asks for every replica to stop; stopping an ended deployment changes nothing."""
    deployment = get_owned(session, user, deployment_id)
    if not DeploymentStatus(deployment.status).is_final:
        deployment.status = DeploymentStatus.STOPPING
        deployment.status_reason = "stopping: requested by the owner"
        after_commit(session, wake)
    return deployment


def endpoint_urls(api_url: str, deployment_id: str) -> tuple[str, str]:
    base = f"{api_url}/api/deployments/{deployment_id}/v1"
    return f"{base}/completions", base


def read(session: Session, deployment: Deployment, api_url: str, rps: float) -> DeploymentRead:
    replicas = DeploymentRepository(session).replicas([deployment.id])
    endpoint, base_url = endpoint_urls(api_url, deployment.id)
    details = [
        ReplicaRead(
            slot=r.slot,
            job_id=r.job_id,
            node=r.node,
            port=r.port,
            health=r.state,
            reason=r.reason,
            restart_count=r.restart_count,
            last_exit=r.last_exit,
            last_exit_code=r.last_exit_code,
            last_exit_at=r.last_exit_at,
            healthy_since=r.healthy_since,
        )
        for r in replicas
    ]
    return DeploymentRead(
        id=deployment.id,
        name=deployment.name,
        model_id=deployment.model_id,
        backend=Backend(deployment.backend),
        status=deployment.status,
        endpoint=endpoint,
        base_url=base_url,
        replicas=deployment.replicas,
        requests_per_second=round(rps, 2),
        gpu_count=deployment.gpu_count,
        status_reason=deployment.status_reason,
        healthy_replicas=sum(r.state == ReplicaState.HEALTHY for r in replicas),
        replica_details=details,
        owner_id=deployment.owner_id,
        created_at=deployment.created_at,
        stopped_at=deployment.stopped_at,
    )


# --- deployment keys ------------------------------------------------------------------


def create_key(session: Session, user: User, deployment_id: str, name: str) -> DeploymentKeyCreated:
    deployment = get_owned(session, user, deployment_id)
    secret = DEPLOYMENT_KEY_PREFIX + secrets.token_urlsafe(32)
    key = DeploymentKey(
        id=new_id(IdPrefix.DEPLOYMENT_KEY),
        deployment_id=deployment.id,
        name=name,
        prefix=secret[: len(DEPLOYMENT_KEY_PREFIX) + 6],
        secret_digest=api_key_digest(secret),
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return DeploymentKeyCreated(**DeploymentKeyRead.model_validate(key).model_dump(), key=secret)


def list_keys(session: Session, user: User, deployment_id: str) -> list[DeploymentKeyRead]:
    deployment = get_owned(session, user, deployment_id)
    return [
        DeploymentKeyRead.model_validate(k)
        for k in DeploymentRepository(session).keys(deployment.id)
    ]


def revoke_key(session: Session, user: User, deployment_id: str, key_id: str) -> None:
    deployment = get_owned(session, user, deployment_id)
    key = session.get(DeploymentKey, key_id)
    if key is None or key.deployment_id != deployment.id or key.revoked_at is not None:
        raise resource_not_found("Deployment key", key_id)
    key.revoked_at = utcnow()
