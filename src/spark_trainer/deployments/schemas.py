from __future__ import annotations

from pydantic import Field

from spark_trainer.deployments.backends import Backend
from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime
from spark_trainer.models import DeploymentStatus, ReplicaState

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
MAX_REPLICAS = 64


class DeploymentCreate(InputSchema):
    name: str = Field(
        pattern=NAME_PATTERN, description="Also the model name the endpoint serves under."
    )
    model_id: str = Field(max_length=40, description="A registered model version.")
    backend: Backend = Field(
        description="transformers (built in, CPU or GPU), vllm, tgi or triton (executables "
        "on the node)."
    )
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    gpu_count: int = Field(
        default=1, ge=0, le=1024, description="GPUs of each replica (tensor parallel / shards)."
    )


class DeploymentUpdate(InputSchema):
    replicas: int = Field(ge=1, le=MAX_REPLICAS, description="Scale to this many replicas.")


class ReplicaRead(Schema):
    slot: int
    job_id: str | None = Field(description="The job running this replica's current process.")
    node: str
    port: int | None
    health: ReplicaState
    reason: str | None
    restart_count: int
    last_exit: str | None = Field(description="How the previous process ended.")
    last_exit_code: int | None
    last_exit_at: UTCDatetime | None
    healthy_since: UTCDatetime | None


class DeploymentRead(Schema):
    id: str
    name: str
    model_id: str
    backend: Backend
    status: DeploymentStatus
    endpoint: str = Field(description="Completions URL of the deployment (proxied).")
    base_url: str = Field(description="OpenAI-style base URL (…/v1) of the endpoint.")
    replicas: int = Field(description="Replicas asked for.")
    requests_per_second: float = Field(
        description="Requests through the endpoint per second, over a 10 s sliding window."
    )
    gpu_count: int
    status_reason: str | None
    healthy_replicas: int
    replica_details: list[ReplicaRead]
    owner_id: str
    created_at: UTCDatetime
    stopped_at: UTCDatetime | None


class DeploymentKeyCreate(InputSchema):
    name: str = Field(min_length=1, max_length=200)


class DeploymentKeyRead(Schema):
    id: str
    name: str
    prefix: str
    created_at: UTCDatetime
    revoked_at: UTCDatetime | None


class DeploymentKeyCreated(DeploymentKeyRead):
    key: str = Field(description="The secret; shown once, never again.")
