from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from spark_trainer.models import (
    Deployment,
    DeploymentKey,
    DeploymentReplica,
    DeploymentRequestCount,
    DeploymentStatus,
    Job,
    User,
)

FINAL = (DeploymentStatus.STOPPED, DeploymentStatus.FAILED)


class DeploymentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, deployment_id: str) -> Deployment | None:
        return self.session.get(Deployment, deployment_id)

    def add(self, deployment: Deployment) -> Deployment:
        self.session.add(deployment)
        self.session.flush()
        return deployment

    def page(self, user: User, *, limit: int, offset: int) -> tuple[Sequence[Deployment], int]:
        query = select(Deployment)
        if not user.is_admin:
            query = query.where(Deployment.owner_id == user.id)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = self.session.scalars(
            query.order_by(Deployment.created_at.desc(), Deployment.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return items, total

    def active_ids(self) -> Sequence[str]:
        return self.session.scalars(
            select(Deployment.id).where(Deployment.status.not_in(FINAL)).order_by(Deployment.id)
        ).all()

    def replicas(self, deployment_ids: Sequence[str]) -> Sequence[DeploymentReplica]:
        if not deployment_ids:
            return []
        return self.session.scalars(
            select(DeploymentReplica)
            .where(DeploymentReplica.deployment_id.in_(deployment_ids))
            .order_by(DeploymentReplica.deployment_id, DeploymentReplica.slot)
        ).all()

    def jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            return {}
        return {j.id: j for j in self.session.scalars(select(Job).where(Job.id.in_(job_ids)))}

    def ports_in_use(self, node: str) -> set[int]:
        return {
            port
            for port in self.session.scalars(
                select(DeploymentReplica.port).where(
                    DeploymentReplica.node == node, DeploymentReplica.port.is_not(None)
                )
            )
            if port is not None
        }

    def routes(self) -> list[tuple[str, str, str, str | None, int | None]]:
        """``(deployment id, owner id, status, replica state, replica port)`` of every
        deployment that is not final, one row per replica (state and port None when it
        has none). Columns, not entities: the proxy reloads this twice a second."""
        rows = self.session.execute(
            select(
                Deployment.id,
                Deployment.owner_id,
                Deployment.status,
                DeploymentReplica.state,
                DeploymentReplica.port,
            )
            .outerjoin(DeploymentReplica, DeploymentReplica.deployment_id == Deployment.id)
            .where(Deployment.status.not_in(FINAL))
        ).all()
        return [(d, owner, status, state, port) for d, owner, status, state, port in rows]

    def key_by_digest(self, digest: str) -> DeploymentKey | None:
        return self.session.scalar(
            select(DeploymentKey).where(
                DeploymentKey.secret_digest == digest, DeploymentKey.revoked_at.is_(None)
            )
        )

    def keys(self, deployment_id: str) -> Sequence[DeploymentKey]:
        return self.session.scalars(
            select(DeploymentKey)
            .where(DeploymentKey.deployment_id == deployment_id)
            .order_by(DeploymentKey.created_at, DeploymentKey.id)
        ).all()

    def add_request_counts(self, counts: dict[tuple[str, int], int], keep_after: int) -> None:
        """Adds ``{(deployment id, second): requests}`` to the shared counts (several API
        processes add to the same rows), and drops the counted seconds up to ``keep_after``
        of those deployments. Counts of a deployment deleted meanwhile are dropped."""
        if not counts:
            return
        ids = sorted({deployment_id for deployment_id, _ in counts})
        live = set(self.session.scalars(select(Deployment.id).where(Deployment.id.in_(ids))))
        rows = [
            {"deployment_id": d, "second": second, "count": n}
            for (d, second), n in sorted(counts.items())
            if d in live
        ]
        if rows:
            dialect = self.session.get_bind().dialect.name
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            statement = insert(DeploymentRequestCount)
            self.session.execute(
                statement.on_conflict_do_update(
                    index_elements=["deployment_id", "second"],
                    set_={"count": DeploymentRequestCount.count + statement.excluded.count},
                ),
                rows,
            )
        self.session.execute(
            delete(DeploymentRequestCount).where(
                DeploymentRequestCount.deployment_id.in_(ids),
                DeploymentRequestCount.second <= keep_after,
            )
        )

    def request_counts(self, deployment_ids: Sequence[str], after: int) -> dict[str, int]:
        """Requests per deployment in the seconds after ``after``, over all API processes."""
        if not deployment_ids:
            return {}
        rows = self.session.execute(
            select(DeploymentRequestCount.deployment_id, func.sum(DeploymentRequestCount.count))
            .where(
                DeploymentRequestCount.deployment_id.in_(deployment_ids),
                DeploymentRequestCount.second > after,
            )
            .group_by(DeploymentRequestCount.deployment_id)
        ).all()
        return {deployment_id: int(total) for deployment_id, total in rows}
