from __future__ import annotations

import pytest

from spark_trainer.errors import NotFound
from spark_trainer.identity.service import ensure_owner
from tests.conftest import Account


def test_owner_and_admin_pass_others_get_not_found(
    alice: Account, bob: Account, admin: Account
) -> None:
    ensure_owner(alice.user, alice.user.id, "Job", "job-1")
    ensure_owner(admin.user, alice.user.id, "Job", "job-1")
    with pytest.raises(NotFound, match="Job 'job-1' not found"):
        ensure_owner(bob.user, alice.user.id, "Job", "job-1")
