"""The control plane's parts, built once and shared by the API and the supervisor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from emulator.clock import Clock, SystemClock
from emulator.config import Settings
from emulator.service.hub import Hub
from emulator.service.secrets import SecretService
from emulator.service.webhooks import WebhookSender
from emulator.service.workers import WorkerRegistry
from emulator.store.db import connect
from emulator.store.endpoint_logs import EndpointLogStore
from emulator.store.endpoints import EndpointStore
from emulator.store.jobs import JobStore
from emulator.store.secrets import SecretStore
from emulator.store.streams import StreamStore, WebhookStore
from emulator.store.templates import NamedDocs
from emulator.workers.s3 import S3Access

if TYPE_CHECKING:
    from emulator.service.jobs import JobService
    from emulator.service.metrics import Metrics


@dataclass
class Core:
    settings: Settings
    clock: Clock
    endpoints: EndpointStore
    jobs: JobStore
    streams: StreamStore
    webhooks: WebhookSender
    workers: WorkerRegistry
    hub: Hub
    templates: NamedDocs  # /v1/templates
    registry_auths: NamedDocs  # /v1/containerregistryauth (passwords: write-only)
    secrets: SecretService
    logs: EndpointLogStore  # worker output per endpoint, kept after the worker is gone
    metrics: Metrics | None = None  # set by ``metrics.attach``
    s3: S3Access | None = None  # the local S3 server, when serve --s3 started one

    def close(self) -> None:
        self.logs.close()
        self.jobs.conn.close()


def build_core(settings: Settings, clock: Clock | None = None) -> Core:
    clock = clock or SystemClock()
    conn = connect(settings.db_path)
    jobs = JobStore(conn)
    endpoints = EndpointStore(conn)
    return Core(
        settings=settings,
        clock=clock,
        endpoints=endpoints,
        jobs=jobs,
        streams=StreamStore(conn),
        webhooks=WebhookSender(WebhookStore(conn), settings, clock, jobs.get),
        workers=WorkerRegistry(conn, clock),
        hub=Hub(),
        templates=NamedDocs(conn, "templates"),
        registry_auths=NamedDocs(conn, "registry_auths"),
        secrets=SecretService(SecretStore(settings.data_dir), endpoints, clock),
        logs=EndpointLogStore(settings.data_dir, settings.endpoint_log_mb),
    )


def job_service(core: Core) -> JobService:
    """The ``JobService`` over the parts of ``core``, its collaborators named (the composition root's
    and the tests' shorthand)."""
    from emulator.service.jobs import JobService

    return JobService(
        core.jobs,
        core.streams,
        core.workers,
        core.hub,
        core.webhooks,
        core.clock,
        core.settings,
        core.metrics,
    )
