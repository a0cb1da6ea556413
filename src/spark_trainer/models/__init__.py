"""All ORM tables live in this one package so relationships never cause import cycles."""

from spark_trainer.models.base import Base
from spark_trainer.models.user import ApiKey, RefreshToken, Role, Tier, User

__all__ = ["ApiKey", "Base", "RefreshToken", "Role", "Tier", "User"]
