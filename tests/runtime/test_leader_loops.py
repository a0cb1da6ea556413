"""Domain loops hosted on the scheduling leader: of two processes' worth of lease and
loops on one database, only the lease holder's loop passes; when it lets go of the lease,
the other's takes over."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from spark_trainer.runtime.leader import LeaderLease, LeaderLoops
from tests.jobs.helpers import wait_until

EVERY = 0.05


class _Counter:
    def __init__(self) -> None:
        self.passes = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.passes += 1


@pytest.fixture
def loops(database_url: str) -> Iterator[tuple[list[LeaderLease], list[_Counter]]]:
    engine = create_engine(database_url)
    factory = sessionmaker(engine)
    leases = [LeaderLease(factory, ttl=30) for _ in range(2)]
    counters = [_Counter() for _ in range(2)]
    hosts = [LeaderLoops(lambda lease=lease: lease.held) for lease in leases]
    for host, counter in zip(hosts, counters, strict=True):
        host.add("test.loop", counter, every=EVERY)
        host.start()
    yield leases, counters
    for host in hosts:
        host.stop()
    engine.dispose()


def test_only_the_leader_runs_the_loop(
    loops: tuple[list[LeaderLease], list[_Counter]],
) -> None:
    (first, second), (mine, theirs) = loops
    assert first.refresh()
    assert not second.refresh()
    wait_until(lambda: mine.passes >= 5, timeout=10, what="the leader's passes")
    assert theirs.passes == 0

    first.release()
    assert second.refresh()
    before = mine.passes
    wait_until(lambda: theirs.passes >= 5, timeout=10, what="the new leader's passes")
    # At most the pass that was under way when the lease went.
    assert mine.passes <= before + 1


def test_a_name_is_registered_once() -> None:
    host = LeaderLoops(lambda: True)
    host.add("test.loop", lambda: None, every=1.0)
    with pytest.raises(ValueError, match="already registered"):
        host.add("test.loop", lambda: None, every=1.0)
