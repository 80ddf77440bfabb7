"""The node side of the Docker plugin: per-volume locks, releases, and recovery.

A volume is staged once per node under the mount root and released (unmounted, and
detached if our attach made the local resource) when nobody holds it. Attaching,
staging, releasing and detaching themselves are the core's
:class:`~plugin.local_attachment.LocalAttachment`; this module keeps Docker's
bookkeeping around them honest across failures:

- the last Unmount releases after a short delay, so the Mount Docker sends right after
  its pre-start Unmount reuses the staging mount;
- a detach that cannot reach LINSTOR keeps the record as a pending detach, retried by
  the background check and at the next start, so no diskless resource made for a mount
  leaks;
- counts no container holds any more (Docker re-sent a Mount whose answer a crash lost;
  see :mod:`docker_plugin.recovery`) are released in Unmount, Remove, at start and by
  the background check, and each release is logged with the volume and the IDs dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from docker_plugin.recovery import MountUse, scan_mount_use, sees_all_processes
from docker_plugin.refcounts import MountRecord, MountStore
from plugin.keyed_locks import KeyedLocks
from plugin.local_attachment import DEFAULT_SETTLE_SECONDS, LocalAttachment
from plugin.observability import MOUNTED_VOLUMES

if TYPE_CHECKING:
    from plugin.node.ops import NodeOps
    from plugin.volumes.service import VolumeService

log = logging.getLogger("docker_plugin.driver")

DEFAULT_RELEASE_DELAY = 2.0
# Between Docker's Mount and the container's bind of the volume, no namespace shows the
# use yet (runc is still starting the container): younger counts are never called stale.
DEFAULT_STALE_GRACE = 60.0
DEFAULT_CHECK_INTERVAL = 30.0


class NodeStaging:
    """Staged volumes of this node: locks, delayed releases, pending detaches, stale counts."""

    def __init__(
        self,
        service: VolumeService,
        nodeops: NodeOps,
        store: MountStore,
        *,
        node: str,
        mount_root: Path,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        release_delay: float = DEFAULT_RELEASE_DELAY,
        stale_grace: float = DEFAULT_STALE_GRACE,
        scan: Callable[[], MountUse | None] = scan_mount_use,
    ) -> None:
        self.service = service
        self.nodeops = nodeops
        self.store = store
        self.node = node
        self.mount_root = mount_root
        self.local = LocalAttachment(
            service, nodeops, node, settle_seconds=settle_seconds, volumes_label="Docker volumes"
        )
        self.release_delay = release_delay
        self.stale_grace = stale_grace
        self._scan = scan
        self.recovers_stale_counts = sees_all_processes()
        self._stopping = threading.Event()
        self._timers: dict[str, threading.Timer] = {}
        self._timers_guard = threading.Lock()
        self._closed = False
        self._volume_locks = KeyedLocks("volume")
        self._update_gauge()

    def _lock(self, resource: str) -> AbstractContextManager[None]:
        """One lock per volume: Docker runs calls concurrently, and Mount/Unmount must not race."""
        return self._volume_locks.lock(resource)

    def _update_gauge(self) -> None:
        MOUNTED_VOLUMES.labels("docker").set(self.store.mounted_count())

    def staging_path(self, resource: str) -> Path:
        return self.mount_root / resource

    def _schedule_release(self, resource: str) -> None:
        with self._timers_guard:
            old = self._timers.pop(resource, None)
            if old is not None:
                old.cancel()
            if self._closed:
                return
            timer = threading.Timer(self.release_delay, self._release_if_idle, args=(resource,))
            timer.daemon = True
            timer.name = f"release-{resource}"
            self._timers[resource] = timer
            timer.start()

    def _cancel_release(self, resource: str) -> None:
        with self._timers_guard:
            timer = self._timers.pop(resource, None)
        if timer is not None:
            timer.cancel()

    def _release_if_idle(self, resource: str) -> None:
        with self._lock(resource):
            with self._timers_guard:
                self._timers.pop(resource, None)
            record = self.store.get(resource)
            if record is None or record.total > 0:
                return  # mounted again meanwhile
            self._release_safely(record)

    def _release(self, record: MountRecord) -> None:
        """Unmount and detach a volume nobody holds; caller holds the volume's lock.

        A detach that cannot be done now (the controller is unreachable, say) keeps the
        record as a pending detach, retried by the background check and at the next start,
        so no diskless resource made for a mount is left behind. Docker never sees a failed
        Unmount for this: the volume itself is released.
        """
        if self.local.release(record.resource, record.name, record.path, record.attached):
            self.store.forget(record.resource)
        else:
            self.store.drop_holders(record.resource, detach_pending=True)
        self._update_gauge()

    def _release_stale(
        self, record: MountRecord, grace: float, why: str, use: MountUse | None = None
    ) -> bool:
        """Release a volume whose counts no container holds any more; caller holds its lock.

        Only counts older than ``grace`` seconds are considered, only when the scan of the
        mount namespaces is complete, and the unmount is refused while a process still has
        files open on the volume. Returns whether the volume was released.
        """
        if record.total <= 0 or not self.recovers_stale_counts:
            return False
        if grace > 0 and time.time() - record.acquired_at < grace:
            return False
        use = use or self._scan()
        if use is None or use.used_by_container(record.path):
            return False
        if not self.local.unmount_unless_in_use(record.path):
            return False  # a process has files open on it: in use after all
        dropped = self.store.drop_holders(record.resource)
        log.warning(
            "released stale mount counts of volume %s: no container uses it any more",
            record.name,
            extra={
                "fields": {
                    "event": "stale_mounts_released",
                    "volume": record.name,
                    "resource": record.resource,
                    "ids": sorted(dropped),
                    "counts": dropped,
                    "trigger": why,
                }
            },
        )
        self._cancel_release(record.resource)
        self._release(record)
        return True

    def housekeeping(self, trigger: str = "background check") -> None:
        """One background pass: stale counts, pending detaches, releases a failure left undone."""
        use: MountUse | None = None
        for seen in self.store.records():
            with self._lock(seen.resource):
                record = self.store.get(seen.resource)
                if record is None:
                    continue
                if record.total > 0:
                    if self.recovers_stale_counts and time.time() - record.acquired_at >= self.stale_grace:
                        use = use or self._scan()
                        if use is not None:
                            self._release_stale(record, self.stale_grace, trigger, use)
                elif record.detach_pending:
                    if self.local.detach(record.resource, record.name):
                        log.info("detached %s, left attached by an interrupted release", record.name)
                        self.store.forget(record.resource)
                elif not self._release_pending(record.resource):
                    self._release_safely(record)

    def _release_pending(self, resource: str) -> bool:
        with self._timers_guard:
            return resource in self._timers

    def _release_safely(self, record: MountRecord) -> None:
        try:
            self._release(record)
        except Exception:
            # Stays staged with no holder: the next Mount reuses it, the next pass retries.
            log.exception("could not release %s from %s", record.name, record.path)

    def start_housekeeping(self, interval: float) -> threading.Thread:
        """Run :meth:`housekeeping` now and then every ``interval`` seconds (0: only now)."""

        def loop() -> None:
            trigger = "start"
            while not self._stopping.is_set():
                try:
                    self.housekeeping(trigger)
                except Exception:
                    log.exception("background check failed; it runs again later")
                if interval <= 0 or self._stopping.wait(interval):
                    return
                trigger = "background check"

        thread = threading.Thread(target=loop, name="housekeeping", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """At shutdown: release now what is waiting for its release delay."""
        self._stopping.set()
        with self._timers_guard:
            self._closed = True
            pending = list(self._timers)
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        for resource in pending:
            self._release_if_idle(resource)

    def reconcile(self) -> None:
        """At start: align the persisted counts with what is really mounted under the mount root.

        Volumes whose mount vanished while the plugin was down (a reboot, say) and which our
        attach made stay as pending detaches; :meth:`housekeeping` detaches them, since that
        needs the controller.
        """
        staged: list[MountRecord] = []
        for entry in self.nodeops.mounted_directories(str(self.mount_root)):
            # attached=True: whether attach made the local resource is unknown now; the
            # core's detach removes only a diskless resource its attach created.
            path = str(self.mount_root / entry)
            staged.append(MountRecord(entry, name=entry, path=path, attached=True))
        self.store.reconcile(self.nodeops.is_mounted, staged)
        self._update_gauge()
        for record in self.store.records():
            if record.total == 0 and not record.detach_pending:
                self._schedule_release(record.resource)  # was waiting for its release delay
        if not self.recovers_stale_counts:
            log.warning(
                "mount counts left by a lost Mount answer are not recovered: this process does not "
                "see the node's other processes (run it in the host's PID namespace)"
            )
