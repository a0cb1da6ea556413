from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.models.base import Base, TimestampMixin


class NodeState(StrEnum):
    UP = "up"
    # Stopped cleanly: keeps its row (so submissions that fit it are still accepted) but
    # receives no placements until it heartbeats again.
    DOWN = "down"
    # Stopped heartbeating for SPARKTRAINER_NODE_STALE_SECONDS: its jobs failed as lost.
    # Its next heartbeat makes it up again.
    LOST = "lost"


class Node(TimestampMixin, Base):
    """A machine that runs jobs, as its own server process last reported it."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # [{"index": 0, "name": "...", "uuid": ..., "memory_total": ...}, ...]
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=NodeState.UP)
    heartbeat_at: Mapped[datetime]


class Lease(Base):
    """A named lease (the scheduling leader): held by one process until it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime]
