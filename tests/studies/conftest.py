from __future__ import annotations

from collections.abc import Callable

import pytest

from spark_trainer.settings import Settings


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # Waiting on a study polls it several times a second for up to minutes: more than the
    # standard tier's 100 requests a minute, which is not what these tests are about.
    return settings_factory(rate_limit_standard_per_minute=100_000)
