"""The node side of the Docker plugin: per-volume locks, releases, and recovery.

A volume is staged once per node under the mount root and released (unmounted, and
detached if our attach made the local resource) when nobody holds it. This module keeps
that bookkeeping honest across failures:

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
from plugin import errors
from plugin.keyed_locks import KeyedLocks
from plugin.observability import MOUNTED_VOLUMES

if TYPE_CHECKING:
    from plugin.node.ops import NodeOps
    from plugin.volumes.service import VolumeService

log = logging.getLogger("docker_plugin.driver")

DEFAULT_SETTLE_SECONDS = 5.0
DEFAULT_RELEASE_DELAY = 2.0
# Between Docker's Mount and the container's bind of the volume, no namespace shows the
# use yet (runc is still starting the container): younger counts are never called stale.
DEFAULT_STALE_GRACE = 60.0
DEFAULT_CHECK_INTERVAL = 30.0
SETTLE_POLL_SECONDS = 0.2
# A detach failing for these reasons is retried later; other failures are final.
_RETRIED_DETACH = (errors.Unavailable, errors.InUse, errors.Busy, errors.NodeOffline)


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
        self.settle_seconds = settle_seconds
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

    def _settling(self, action: Callable[[], None]) -> None:
        """Run ``action``, retrying briefly while only this node still reports the volume in use.

        After the last container using a volume exits, the kernel drops the container's
        mount namespace, and with it the last reference to the device, a moment later;
        ``docker rm -f c && docker volume rm v`` must not fail on that.
        """
        deadline = time.monotonic() + self.settle_seconds
        while True:
            try:
                action()
                return
            except errors.InUse as exc:
                nodes = [str(n) for n in exc.details.get("nodes") or ()]
                if nodes != [self.node] or time.monotonic() >= deadline:
                    raise
            time.sleep(SETTLE_POLL_SECONDS)

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
        self.nodeops.unmount(record.path)
        if record.attached and not self._detach(record):
            self.store.drop_holders(record.resource, detach_pending=True)
        else:
            self.store.forget(record.resource)
        self._update_gauge()

    def _detach(self, record: MountRecord) -> bool:
        """Remove the diskless resource our attach made; False when it must be retried later."""
        try:
            self._settling(lambda: self.service.detach(record.resource, self.node))
        except _RETRIED_DETACH as exc:
            log.warning("could not detach %s from %s yet, will retry: %s", record.name, self.node, exc)
            return False
        except errors.VolumeError as exc:
            log.warning("could not detach %s from %s after unmount: %s", record.name, self.node, exc)
        return True

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
        try:
            self.nodeops.unmount(record.path)
        except errors.InUse:
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
                    if self._detach(record):
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
        if self.mount_root.is_dir():
            for entry in self.mount_root.iterdir():
                if entry.is_dir() and self.nodeops.is_mounted(str(entry)):
                    # attached=True: whether attach made the local resource is unknown now; the
                    # core's detach removes only a diskless resource its attach created.
                    staged.append(MountRecord(entry.name, name=entry.name, path=str(entry), attached=True))
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
