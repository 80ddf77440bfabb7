"""Shipments in the background: who runs, how they change the state, and what a restart finds.

A shipment (S3 upload, S3 restore, LINSTOR-to-LINSTOR send) is a thread. It reads snapshot
files and talks to the network without the state lock, and takes the lock (and a reservation
of its resource definition) only to record progress, which is saved at once. Its state lives
where the controller keeps it: in the snapshot definition's properties
(``BackupShipping/Source/<remote>/ShippingStatus``, ``BackupShipping/Target/ShippingStatus``)
and flags (``BACKUP``, ``SHIPPING``, ``SHIPPED``).

After a restart, a shipment the state still shows as ``Shipping`` did not finish. As the
controller does when a satellite reconnects, it ends as ``Aborted``, and what it had written
is removed, so a retry neither finds a half backup nor makes a second one. One exception: an
S3 shipment whose meta object was already written is complete (only the last save was lost),
so it becomes ``Success``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emulator import backup_names as bn
from emulator import names
from emulator import state as st
from emulator.core import Emulator

log = logging.getLogger("emulator.backups")
T = TypeVar("T")


@dataclass
class Job:
    """One running shipment; ``stop`` is set by an abort (or shutdown)."""

    kind: str  # "ship" (S3 upload), "restore" (S3 download), "l2l" (send to a LINSTOR remote)
    rd_key: str
    snap_key: str
    remote_key: str
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Engine:
    """The shipments of one emulator."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.jobs: dict[tuple[str, str, str], Job] = {}
        self._queues: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def queue_lock(self, rd_key: str, remote_key: str) -> threading.Lock:
        """Shipments of one resource to one remote run one after the other (the controller queues them)."""
        with self._guard:
            return self._queues.setdefault((rd_key, remote_key), threading.Lock())

    def start(self, job: Job, work: Callable[[Job], None]) -> None:
        key = (job.rd_key, job.snap_key, job.remote_key)

        def run() -> None:
            try:
                work(job)
            except Exception:
                log.exception("shipment %s of %s/%s failed unexpectedly", job.kind, job.rd_key, job.snap_key)
            finally:
                with self._guard:
                    if self.jobs.get(key) is job:
                        del self.jobs[key]
                self.after_job(job.remote_key)

        with self._guard:
            self.jobs[key] = job
        job.thread = threading.Thread(target=run, name=f"backup-{job.kind}", daemon=True)
        job.thread.start()

    def running(self, remote_key: str | None = None) -> list[Job]:
        with self._guard:
            return [j for j in self.jobs.values() if remote_key is None or j.remote_key == remote_key]

    def after_job(self, remote_key: str) -> None:
        """A remote marked for deletion goes once its last shipment has ended."""
        if self.running(remote_key):
            return
        with self.emu.lock:
            remote = self.emu.state.remotes.get(remote_key)
            if remote is not None and "MARK_DELETED" in remote.get("flags", []):
                del self.emu.state.remotes[remote_key]
                self.emu.persist(set())

    def wait_idle(self, timeout: float) -> None:
        for job in self.running():
            if job.thread is not None:
                job.thread.join(timeout)


_ENGINES: dict[int, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_of(emu: Emulator) -> Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(id(emu))
        if engine is None or engine.emu is not emu:
            engine = _ENGINES[id(emu)] = Engine(emu)
        return engine


# ---------------------------------------------------------------------- state changes from a shipment


def mutate(emu: Emulator, rd_key: str, fn: Callable[[st.ResourceDefinition | None], T]) -> T:
    """Run ``fn`` on the definition under the state lock and its reservation, then save it."""
    with emu.lock:
        emu.reservations.acquire({rd_key}, emu.state.resource_definitions.keys)
        try:
            result = fn(emu.state.resource_definitions.get(rd_key))
        finally:
            emu.reservations.release()
        emu.persist({rd_key})
        return result


def snapshot_of(rd: st.ResourceDefinition | None, snap_key: str) -> st.Snapshot | None:
    return rd.snapshots.get(snap_key) if rd is not None else None


def set_flags(snap: st.Snapshot, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()) -> None:
    flags = [f for f in snap.flags if f not in remove]
    for f in add:
        if f not in flags:
            flags.append(f)
    snap.flags = flags


def source_status(snap: st.Snapshot, remote: str) -> str:
    return snap.props.get(bn.source_key(remote, bn.STATUS), "")


def target_status(snap: st.Snapshot) -> str:
    return snap.props.get(bn.target_key(bn.STATUS), "")


def shipping_remotes(snap: st.Snapshot) -> list[str]:
    """Remotes this snapshot is being shipped to right now (as source)."""
    prefix, suffix = f"{bn.NAMESPC}/Source/", f"/{bn.STATUS}"
    return [
        k[len(prefix) : -len(suffix)]
        for k, v in snap.props.items()
        if k.startswith(prefix) and k.endswith(suffix) and v == bn.SHIPPING
    ]


def busy(snap: st.Snapshot) -> bool:
    """Being shipped or restored: the controller refuses to delete such a snapshot (997)."""
    return bool(shipping_remotes(snap)) or target_status(snap) == bn.SHIPPING


def end_source(snap: st.Snapshot, remote: str, status: str) -> None:
    snap.props[bn.source_key(remote, bn.STATUS)] = status
    set_flags(snap, add=("SHIPPED",) if status == bn.SUCCESS else (), remove=("SHIPPING",))


def end_target(snap: st.Snapshot, status: str) -> None:
    snap.props[bn.target_key(bn.STATUS)] = status
    if status == bn.SUCCESS:
        set_flags(snap, add=("SHIPPED", "SUCCESSFUL"), remove=("SHIPPING",))
    else:
        set_flags(snap, add=("FAILED_DEPLOYMENT",), remove=("SHIPPING", "SUCCESSFUL"))


def drop_files(snap: st.Snapshot) -> None:
    for sv in snap.volumes.values():
        if sv.file:
            Path(sv.file).unlink(missing_ok=True)


def remote_key_of(name: str) -> str:
    return names.key(name)


# ---------------------------------------------------------------------- restart


def recover(emu: Emulator) -> None:
    """End the shipments a previous process left unfinished (see the module's description)."""
    from emulator import backup_s3, l2l

    pending: list[tuple[str, str, dict[str, Any]]] = []
    with emu.lock:
        for rd_key, rd in list(emu.state.resource_definitions.items()):
            for snap_key, snap in list(rd.snapshots.items()):
                for remote_name in shipping_remotes(snap):
                    remote = emu.state.remotes.get(names.key(remote_name))
                    if remote is not None and remote["type"] == "S3":
                        pending.append((rd_key, snap_key, dict(remote)))
                    else:
                        end_source(snap, remote_name, bn.ABORTED)
                        log.warning(
                            "shipment of %s/%s to %s was interrupted: aborted",
                            rd.name,
                            snap.name,
                            remote_name,
                        )
                        if remote is not None:
                            l2l.abort_on_target(remote, rd.name, snap)
                if target_status(snap) == bn.SHIPPING:
                    # A download or a receive that the restart cut off: its data is incomplete.
                    log.warning("restore into %s/%s was interrupted: aborted", rd.name, snap.name)
                    drop_files(snap)
                    del rd.snapshots[snap_key]
                    if not rd.snapshots and not rd.resources:
                        # The empty definition the restore had made for it.
                        del emu.state.resource_definitions[rd_key]
        emu.persist()
    for rd_key, snap_key, remote in pending:
        backup_s3.recover_upload(emu, rd_key, snap_key, remote)
