"""Public resource ids: a readable prefix and 16 random hex digits (``job-3f9a1c2b4d5e6f70``)."""

from __future__ import annotations

import secrets
from enum import StrEnum


class IdPrefix(StrEnum):
    USER = "user"
    API_KEY = "key"
    JOB = "job"
    EXPERIMENT = "exp"
    DATASET = "ds"
    DATASET_VERSION = "dsv"
    MODEL = "model"
    STUDY = "study"
    DEPLOYMENT = "deploy"
    DEPLOYMENT_KEY = "dkey"
    EVALUATION = "eval"


def new_id(prefix: IdPrefix) -> str:
    return f"{prefix.value}-{secrets.token_hex(8)}"
