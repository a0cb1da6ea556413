"""All ORM tables live in this one package so relationships never cause import cycles."""

from spark_trainer.models.base import Base
from spark_trainer.models.dataset import Dataset, DatasetFormat, DatasetVersion
from spark_trainer.models.experiment import Experiment, MetricSummary
from spark_trainer.models.job import FINAL_STATUSES, Job, JobEvent, JobStatus, MetricPoint
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
    "ApiKey",
    "Base",
    "Dataset",
    "DatasetFormat",
    "DatasetVersion",
    "Experiment",
    "Job",
    "JobEvent",
    "JobStatus",
    "MetricPoint",
    "MetricSummary",
    "ModelFile",
    "ModelTag",
    "ModelVersion",
    "RefreshToken",
    "Role",
    "Study",
    "StudyStatus",
    "StudyTrial",
    "Tier",
    "TrialState",
    "User",
]
