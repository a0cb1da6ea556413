"""Everything one running API process holds: settings, database, limiter, clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import redis
from sqlalchemy import URL, Engine, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.activity.hub import ActivityHub
from spark_trainer.activity.record import publish_after_commit
from spark_trainer.datadir import secure_data_dir
from spark_trainer.db.engine import make_engine, make_session_factory, request_session_limit
from spark_trainer.db.reads import ReadDatabase
from spark_trainer.deployments.proxy import DeploymentProxy
from spark_trainer.deployments.supervisor import ReplicaSupervisor
from spark_trainer.evaluations.collector import host_collector, on_job_ended
from spark_trainer.gpus.inventory import GpuInventory, VirtualGpuInventory, build_inventory
from spark_trainer.identity import service as identity
from spark_trainer.identity.cache import UserCache
from spark_trainer.identity.service import TokenConfig
from spark_trainer.kit.gates import ConcurrencyGate
from spark_trainer.metrics.bus import EventBus, LocalBus, RedisBus
from spark_trainer.metrics.hub import StreamHub
from spark_trainer.metrics.pipeline import MetricsPipeline
from spark_trainer.models import JobKind, Node
from spark_trainer.ratelimit import RateLimiter
from spark_trainer.registry import service as registry
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.runtime.events import HandlerRegistry
from spark_trainer.settings import Settings
from spark_trainer.storage.base import ArtifactStore
from spark_trainer.storage.local import LocalArtifactStore
from spark_trainer.studies.controller import StudyController

if TYPE_CHECKING:
    from spark_trainer.executor.celery import CeleryDispatcher

# The job-end handler that registers a completed job's output as a model version. Domain
# packages add theirs to ``AppContext.jobs.handlers`` in ``build`` (before ``start``).
MODEL_REGISTRATION = "registry.register_completed_job"
EVALUATION_RESULTS = "evaluations.record_outcome"
TRIAL_RESULTS = "studies.record_trial_end"
WORKER_LIVE = "live"


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    # The request path's short reads (db.reads): on the loop, no session, no thread hop.
    reads: ReadDatabase
    tokens: TokenConfig
    limiter: RateLimiter
    gpu_inventory: GpuInventory
    hub: StreamHub
    bus: EventBus
    jobs: JobEngine
    artifacts: ArtifactStore
    # Bounds open request sessions below the pool's size (see request_session_limit).
    session_slots: asyncio.Semaphore
    deployment_supervisor: ReplicaSupervisor
    deployment_proxy: DeploymentProxy
    # Uploads in progress per user (SPARKTRAINER_MAX_UPLOADS_PER_USER).
    uploads: ConcurrencyGate
    users: UserCache
    studies: StudyController
    activity: ActivityHub
    redis: redis.Redis | None = field(default=None)
    running: bool = field(default=False)
    # Distributed mode's Celery dispatch (None: jobs run on this process's executor).
    dispatcher: CeleryDispatcher | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        """Builds every part; nothing starts running until :meth:`start`."""
        secure_data_dir(settings)
        engine = make_engine(settings)
        session_factory = make_session_factory(engine)
        client = (
            redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        hub = StreamHub()
        bus: EventBus = RedisBus(hub, client) if client is not None else LocalBus(hub)
        dispatcher = None
        if settings.executor == "celery":
            # Distributed mode: jobs run on the workers' nodes only; this process places
            # them and sends each to its node. (Celery is imported only here: it costs an
            # embedded server's start-up a second.)
            from spark_trainer.executor.celery import CeleryDispatcher, celery_app

            broker = settings.effective_broker_url
            assert broker is not None, "checked by Settings.shared_services_problem"
            dispatcher = CeleryDispatcher(celery_app(broker))
            inventory: GpuInventory = VirtualGpuInventory(0, node=settings.node_name)
        else:
            inventory = build_inventory(settings)
        pipeline = MetricsPipeline(engine, bus)
        artifacts = LocalArtifactStore(settings.artifacts_root)
        jobs = JobEngine(
            settings,
            session_factory,
            inventory,
            bus,
            pipeline,
            artifacts,
            job_end_handlers(artifacts),
            runs_jobs=dispatcher is None,
            on_placed=dispatcher.dispatch if dispatcher is not None else None,
        )
        studies = StudyController(settings, session_factory, jobs)
        jobs.handlers.register(TRIAL_RESULTS, studies.on_trial_ended, kinds=[JobKind.TRIAL])
        host_collector(session_factory, jobs.leader_loops)
        tokens = TokenConfig.from_settings(settings)
        users = UserCache(
            session_factory,
            lambda session, credential: identity.authenticate(session, tokens.key, credential),
            key=tokens.key,
            ttl=settings.user_cache_seconds,
        )
        users.broadcast = bus.publish_user_changed
        bus.user_changed.append(users.invalidate)
        activity = ActivityHub()
        bus.activity.append(activity.publish)
        publish_after_commit(session_factory, bus.publish_activity)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            reads=ReadDatabase(settings),
            session_slots=asyncio.Semaphore(request_session_limit(settings)),
            uploads=ConcurrencyGate(settings.max_uploads_per_user),
            tokens=tokens,
            limiter=RateLimiter.from_url(settings.redis_url, settings.rate_limit_window_seconds),
            users=users,
            activity=activity,
            gpu_inventory=inventory,
            hub=hub,
            bus=bus,
            jobs=jobs,
            artifacts=artifacts,
            deployment_supervisor=ReplicaSupervisor(settings, session_factory, jobs, artifacts),
            deployment_proxy=DeploymentProxy(session_factory, tokens.key),
            redis=client,
            studies=studies,
            dispatcher=dispatcher,
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts the background parts: stream fan-out, event bus, scheduler, executor."""
        self.hub.bind(loop)
        self.activity.bind(loop)
        self.bus.start()
        self.deployment_supervisor.after_pass.append(self.deployment_proxy.invalidate)
        self.jobs.start()
        self.running = True

    def stop(self) -> None:
        self.running = False
        self.jobs.stop()
        self.deployment_supervisor.close()
        self.studies.close()
        self.bus.close()

    def wake_studies(self) -> None:
        """A shortcut for a study created here; the leader's controller polls anyway."""
        self.studies.wake()

    def dependency_status(self) -> tuple[dict[str, bool], dict[str, str]]:
        """The spec's dependencies and whether each answers right now, and in distributed
        mode each registered worker node's state (``worker_states``).

        Embedded mode has no Redis and no Celery: their in-process stand-ins (the local
        event bus, the in-process executor) answer for them; ``backends`` says which.
        Distributed mode's ``celery`` is true while at least one worker answers.
        """
        database = self._database_ok()
        workers = self.worker_states() if self.dispatcher is not None else {}
        checks = {
            "database": database,
            "redis": self._redis_ok() if self.redis is not None else True,
            "celery": self.running and (self.dispatcher is None or WORKER_LIVE in workers.values()),
        }
        return checks, workers

    def worker_states(self) -> dict[str, str]:
        """Node name → ``live`` (its worker answers a Celery ping), else the state its
        heartbeats left in the database: ``up`` (heartbeating, not answering the broker),
        ``down`` (stopped) or ``lost`` (stopped heartbeating)."""
        assert self.dispatcher is not None
        try:
            with self.session_factory() as session:
                registered = dict(session.execute(select(Node.name, Node.state)).tuples().all())
        except Exception:
            registered = {}  # the database is down: list whoever answers
        answering = self.dispatcher.answering_nodes(len(registered))
        states = {
            name: WORKER_LIVE if name in answering else state for name, state in registered.items()
        }
        states.update((name, WORKER_LIVE) for name in answering)
        return dict(sorted(states.items()))

    def backends(self) -> dict[str, str]:
        """What backs each dependency; URLs without their credentials."""
        database = make_url(self.settings.effective_database_url)
        return {
            "database": database.get_backend_name()
            if self.settings.is_sqlite
            else URL.create(
                database.drivername,
                host=database.host,
                port=database.port,
                database=database.database,
            ).render_as_string(),
            "redis": _without_credentials(self.settings.redis_url)
            if self.settings.redis_url
            else "in-process",
            "celery": _without_credentials(self.settings.effective_broker_url or "")
            if self.dispatcher is not None
            else "in-process",
        }

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
        if self.dispatcher is not None:
            self.dispatcher.close()
        self.gpu_inventory.close()
        if self.redis is not None:
            self.redis.close()
        self.reads.close()
        self.engine.dispose()


def job_end_handlers(artifacts: ArtifactStore) -> HandlerRegistry:
    """The job-end handlers every process that supervises jobs runs (API or worker)."""
    handlers = HandlerRegistry()
    handlers.register(
        MODEL_REGISTRATION,
        lambda session, event: registry.register_completed_job(session, artifacts, event.job_id),
    )
    handlers.register(EVALUATION_RESULTS, on_job_ended, kinds=[JobKind.EVALUATION])
    return handlers


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
