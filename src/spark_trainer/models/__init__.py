"""All ORM tables live in this one package so relationships never cause import cycles."""

from spark_trainer.kit.benchmarks import Benchmark
from spark_trainer.models.base import Base
from spark_trainer.models.dataset import Dataset, DatasetFormat, DatasetVersion
from spark_trainer.models.deployment import (
    Deployment,
    DeploymentKey,
    DeploymentReplica,
    DeploymentRequestCount,
    DeploymentStatus,
    ReplicaState,
)
from spark_trainer.models.evaluation import Evaluation
from spark_trainer.models.experiment import Experiment, MetricSummary
from spark_trainer.models.job import (
    FINAL_STATUSES,
    GpuAllocation,
    Job,
    JobEvent,
    JobKind,
    JobOutbox,
    JobOutboxDelivery,
    JobStatus,
    MetricPoint,
)
from spark_trainer.models.metric_rollup import ROLLUP_STEPS, MetricRollup
from spark_trainer.models.node import Lease, Node, NodeState
from spark_trainer.models.registry import ModelFile, ModelTag, ModelVersion
from spark_trainer.models.study import (
    ACTIVE_STUDY_STATUSES,
    Study,
    StudyStatus,
    StudyTrial,
    TrialState,
)
from spark_trainer.models.user import ApiKey, RefreshToken, Role, Tier, User

__all__ = [
    "ACTIVE_STUDY_STATUSES",
    "FINAL_STATUSES",
    "ROLLUP_STEPS",
    "ApiKey",
    "Base",
    "Benchmark",
    "Dataset",
    "DatasetFormat",
    "DatasetVersion",
    "Deployment",
    "DeploymentKey",
    "DeploymentReplica",
    "DeploymentRequestCount",
    "DeploymentStatus",
    "Evaluation",
    "Experiment",
    "GpuAllocation",
    "Job",
    "JobEvent",
    "JobKind",
    "JobOutbox",
    "JobOutboxDelivery",
    "JobStatus",
    "Lease",
    "MetricPoint",
    "MetricRollup",
    "MetricSummary",
    "ModelFile",
    "ModelTag",
    "ModelVersion",
    "Node",
    "NodeState",
    "RefreshToken",
    "ReplicaState",
    "Role",
    "Study",
    "StudyStatus",
    "StudyTrial",
    "Tier",
    "TrialState",
    "User",
]
