from __future__ import annotations

import pytest

from spark_trainer.activity import endpoints


@pytest.fixture(autouse=True)
def _quick_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test's reader thread stops at the next message it reads; keep-alives every 0.2 s
    # end it at once instead of after the production 15 s.
    monkeypatch.setattr(endpoints, "KEEPALIVE_SECONDS", 0.2)
