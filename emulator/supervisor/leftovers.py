"""PURE: what to do with containers and worker records found after a control-plane restart, and with
containers no worker owns (the loop's sweep)."""

from __future__ import annotations

from collections.abc import Iterable

from emulator.models import WorkerState
from emulator.runtime.base import LABEL_VERSION, LABEL_WORKER, ContainerInfo
from emulator.supervisor.actions import Action, Adopt, Remove, RemoveContainer
from emulator.workers.records import WorkerRecord

S = WorkerState


def plan_adoption(
    containers: Iterable[ContainerInfo], workers: Iterable[WorkerRecord], endpoint_versions: dict[str, int]
) -> list[Action]:
    """After a restart: keep containers that match their worker record, remove every other one.

    A worker record of a container-backed worker whose container is gone is removed too (its jobs
    are requeued by the caller). Records of versions the endpoint has moved past are kept: the loop
    drains them like any outdated worker.
    """
    actions: list[Action] = []
    records = {w.id: w for w in workers if w.kind == "container"}
    matched: set[str] = set()
    for c in containers:
        wid = c.labels.get(LABEL_WORKER, "")
        w = records.get(wid)
        if w is None:
            actions.append(RemoveContainer(c.id, "no worker record for it"))
        elif w.endpoint_id not in endpoint_versions:
            actions.append(RemoveContainer(c.id, "its endpoint no longer exists"))
        elif c.labels.get(LABEL_VERSION) != str(w.version):
            actions.append(RemoveContainer(c.id, f"its version label differs from the record's {w.version}"))
        elif w.container_id != c.id:
            actions.append(RemoveContainer(c.id, "its worker record names another container"))
        elif wid in matched:
            actions.append(RemoveContainer(c.id, "a duplicate container for the same worker"))
        else:
            matched.add(wid)
            actions.append(Adopt(wid, c.id))
    for wid, w in records.items():
        if wid in matched:
            continue
        if w.endpoint_id not in endpoint_versions:
            actions.append(Remove(wid, "its endpoint no longer exists"))
        elif w.state != S.UNHEALTHY and w.state != S.THROTTLED:
            actions.append(Remove(wid, "its container is gone (found at start-up)"))
    return actions


def leaked_containers(
    containers: Iterable[ContainerInfo], owned: dict[str, str | None], busy: set[str]
) -> list[RemoveContainer]:
    """Containers of this control plane that no worker owns (``owned``: worker id -> its container id).

    A worker with an operation in flight (``busy``) may be creating or replacing its container: its
    containers are left alone until the operation ends.
    """
    out = []
    for c in containers:
        wid = c.labels.get(LABEL_WORKER, "")
        if wid in busy:
            continue
        if wid not in owned:
            out.append(RemoveContainer(c.id, f"worker {wid or '?'} no longer exists"))
        elif owned[wid] != c.id:
            out.append(RemoveContainer(c.id, f"worker {wid} has another container"))
    return out
