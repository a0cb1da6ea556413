"""Everything one running API process holds: settings, database, limiter, clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.db.engine import make_engine, make_session_factory, request_session_limit
from spark_trainer.gpus.inventory import GpuInventory, build_inventory
from spark_trainer.identity.service import TokenConfig
from spark_trainer.jobs.engine import JobEngine
from spark_trainer.metrics.bus import EventBus, LocalBus, RedisBus
from spark_trainer.metrics.hub import StreamHub
from spark_trainer.metrics.pipeline import MetricsPipeline
from spark_trainer.ratelimit import RateLimiter
from spark_trainer.registry import service as registry
from spark_trainer.settings import Settings
from spark_trainer.storage.base import ArtifactStore
from spark_trainer.storage.local import LocalArtifactStore
from spark_trainer.studies.controller import StudyController


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    tokens: TokenConfig
    limiter: RateLimiter
    gpu_inventory: GpuInventory
    hub: StreamHub
    bus: EventBus
    jobs: JobEngine
    artifacts: ArtifactStore
    # Bounds open request sessions below the pool's size (see request_session_limit).
    session_slots: asyncio.Semaphore
    studies: StudyController
    redis: redis.Redis | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        """Builds every part; nothing starts running until :meth:`start`."""
        engine = make_engine(settings)
        session_factory = make_session_factory(engine)
        client = (
            redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        hub = StreamHub()
        bus: EventBus = RedisBus(hub, client) if client is not None else LocalBus(hub)
        inventory = build_inventory(settings)
        pipeline = MetricsPipeline(engine, bus)
        artifacts = LocalArtifactStore(settings.artifacts_root)
        jobs = JobEngine(settings, session_factory, inventory, bus, pipeline, artifacts)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            session_slots=asyncio.Semaphore(request_session_limit(settings)),
            tokens=TokenConfig.from_settings(settings),
            limiter=RateLimiter.from_url(settings.redis_url),
            gpu_inventory=inventory,
            hub=hub,
            bus=bus,
            jobs=jobs,
            artifacts=artifacts,
            studies=StudyController(settings, session_factory, jobs),
            redis=client,
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts the background parts: stream fan-out, event bus, scheduler, executor, the
        HPO study controller."""
        self.jobs.completion_hooks.append(self._register_model)
        self.jobs.completion_hooks.append(lambda _: self.studies.wake())
        self.hub.bind(loop)
        self.bus.start()
        self.jobs.start()
        self.studies.start()

    def stop(self) -> None:
        self.studies.stop()
        self.jobs.stop()
        self.bus.close()

    def _register_model(self, job_id: str) -> None:
        with self.session_factory.begin() as session:
            registry.register_completed_job(session, self.artifacts, job_id)

    def dependency_status(self) -> dict[str, bool]:
        """Each dependency in use, and whether it answers right now."""
        status = {"database": self._database_ok()}
        if self.redis is not None:
            status["redis"] = self._redis_ok()
        return status

    def _database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _redis_ok(self) -> bool:
        assert self.redis is not None
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self.gpu_inventory.close()
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()
