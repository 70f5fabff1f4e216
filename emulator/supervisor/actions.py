"""PURE: what the planners (``reconcile``, ``rollout``, ``capacity``) ask the actuator to do.

Each action is a frozen dataclass: planning returns a list of them and changes nothing. Actions that
need host capacity (``Start``, ``Restart``, ``Unthrottle``) carry the GPU ids that admission
(``capacity.admit``) reserved for them; the planners leave ``gpu_ids`` empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.runtime.base import ContainerInfo
from emulator.workers.records import WorkerRecord


@dataclass(frozen=True)
class Start:
    """Start a serving worker: a standby container when ``standby_id`` is set, else a new worker."""

    endpoint_id: str
    reason: str
    standby_id: str | None = None
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateStandby:
    endpoint_id: str


@dataclass(frozen=True)
class Restart:
    """An UNHEALTHY worker whose retry is due: replace its container."""

    worker_id: str
    reason: str
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unthrottle:
    """A THROTTLED worker whose capacity is there now: start its container."""

    worker_id: str
    reason: str
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Throttle:
    """No capacity: a new worker (``worker_id`` None) or a due restart waits THROTTLED with ``reason``.

    For a worker already THROTTLED only its reason is refreshed."""

    endpoint_id: str
    reason: str
    worker_id: str | None = None


@dataclass(frozen=True)
class Placed:
    """The engine placed a THROTTLED worker's queued container (a cluster scheduler found a node): back to
    INITIALIZING, its start-up clock counting from now."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class Fail:
    """The worker is lost: UNHEALTHY, its jobs requeued; ``kill`` a container still running."""

    worker_id: str
    reason: str
    with_logs: bool = True
    kill: bool = False


@dataclass(frozen=True)
class Drain:
    """Take no new job; the worker is removed once it holds none."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class Remove:
    """Stop and remove the container, requeue anything it still holds, forget the worker."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class MarkOutdated:
    """The worker's version is behind the endpoint's: OUTDATED, it takes no new job.

    ``replacing``: the rolling update has picked it (it drains, then is removed and replaced);
    otherwise it waits its turn holding its place."""

    worker_id: str
    reason: str
    replacing: bool = True


@dataclass(frozen=True)
class Pause:
    """FlashBoot: pause an idle worker's container instead of removing it."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class Resume:
    """FlashBoot: unpause a paused worker because work arrived."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class SetRollout:
    """Persist the endpoint's ``rollout`` status (for the version it was planned against)."""

    endpoint_id: str
    version: int
    rollout: dict[str, object] | None


@dataclass(frozen=True)
class Adopt:
    """After a control-plane restart: a container that matches its worker record is kept."""

    worker_id: str
    container_id: str


@dataclass(frozen=True)
class RemoveContainer:
    """A container of this control plane with no (matching) worker record: never leak it."""

    container_id: str
    reason: str


Action = (
    Start
    | CreateStandby
    | Restart
    | Unthrottle
    | Throttle
    | Placed
    | Fail
    | Drain
    | Remove
    | MarkOutdated
    | Pause
    | Resume
    | SetRollout
    | Adopt
    | RemoveContainer
)


@dataclass(frozen=True)
class Observed:
    """One worker record with its container as last seen (None: no such container)."""

    worker: WorkerRecord
    container: ContainerInfo | None
    busy: bool = False
