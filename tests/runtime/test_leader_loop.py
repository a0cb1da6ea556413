"""``LeaderLoop``: its step runs only while the process leads, and keeps running after a
failing step."""

from __future__ import annotations

import threading

from spark_trainer.runtime.leader import LeaderLoop


def test_the_step_runs_only_while_leading_and_survives_a_failure() -> None:
    leading = threading.Event()
    ran = threading.Event()
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        ran.set()
        if len(calls) == 1:
            raise RuntimeError("a step that fails is logged and retried")

    loop = LeaderLoop("test-loop", step, is_leader=leading.is_set, interval=0.01)
    loop.start()
    try:
        # Many intervals pass without the lease: the step never runs.
        assert not ran.wait(0.3)
        leading.set()
        loop.wake()
        assert ran.wait(5)
        ran.clear()
        assert ran.wait(5)  # after the failing first step (1 s pause), it runs again
        leading.clear()
        loop.wake()
        loop.wake()  # a wake-up now is answered by a pass that sees no lease
        settled = threading.Event()
        settled.wait(0.1)  # a step already past its lease check may still finish
        count = len(calls)
        ran.clear()
        assert not ran.wait(0.3)
        assert len(calls) == count
    finally:
        loop.stop()
    assert loop.stopping
