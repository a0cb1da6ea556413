from __future__ import annotations

from collections.abc import Callable

import pytest

from spark_trainer.settings import Settings


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # These tests poll a deployment while it starts; the API's per-user limit is not what
    # they are about.
    return settings_factory(rate_limit_standard_per_minute=100_000)
