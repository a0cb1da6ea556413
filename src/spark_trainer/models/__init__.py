"""All ORM tables live in this one package so relationships never cause import cycles."""

from spark_trainer.models.base import Base
from spark_trainer.models.job import FINAL_STATUSES, Job, JobEvent, JobStatus, MetricPoint
from spark_trainer.models.user import ApiKey, RefreshToken, Role, Tier, User

__all__ = [
    "FINAL_STATUSES",
    "ApiKey",
    "Base",
    "Job",
    "JobEvent",
    "JobStatus",
    "MetricPoint",
    "RefreshToken",
    "Role",
    "Tier",
    "User",
]
