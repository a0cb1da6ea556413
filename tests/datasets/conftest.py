from __future__ import annotations

from collections.abc import Callable

import pytest

from spark_trainer.settings import Settings

MAX_UPLOAD_BYTES = 4 * 1024 * 1024


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # Small enough to test the limit cheaply, above the 1 MiB JSON body limit so the
    # tests also show that uploads are exempt from it.
    return settings_factory(max_upload_bytes=MAX_UPLOAD_BYTES)
