"""What happens once before the API (or a CLI command) touches the database."""

from __future__ import annotations

from spark_trainer.context import AppContext
from spark_trainer.db.migrate import upgrade_to_head
from spark_trainer.identity import service as identity


def prepare(ctx: AppContext) -> str | None:
    """Migrates to head and creates the first admin. Returns a generated admin password."""
    upgrade_to_head(ctx.engine)
    with ctx.session_factory.begin() as session:
        return identity.ensure_admin_user(session, ctx.settings)
