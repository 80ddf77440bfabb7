"""Use a volume on the node this process runs on: attach, stage, and release again.

A front end that hands volumes to local consumers (the Docker plugin mounts them for
containers; a CSI node service that attaches by itself could do the same) needs one
sequence with the same guards every time:

- attach here (the local replica, else a diskless resource), wait for the device, stage
  it (never format a device that carries anything, mount, grow), then the front end's
  own step; when any of these fails, undo what this call did (unmount what it mounted,
  detach what its attach made) so a failed request leaves nothing behind;
- release: unmount, then detach what an attach made. Just after the last user of a
  volume goes away, the kernel drops the node's last reference to the device a moment
  later, so a detach or delete that LINSTOR refuses because *only this node* still uses
  the volume is retried for a few seconds; a detach that cannot be done now (the
  controller is unreachable, a node is offline) is reported to the caller, which keeps
  it as pending and retries it later.

The front end keeps its own bookkeeping (who holds a volume, when to release) and its
own wording; this module knows nothing of Docker or CSI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeVar

from plugin import errors
from plugin.models import Attachment, Volume
from plugin.params.filesystems import FILESYSTEMS
from plugin.progress import long_operation

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SETTLE_SECONDS = 5.0
SETTLE_POLL_SECONDS = 0.2
#: A detach failing for these reasons can succeed later; other failures are final.
RETRIED_DETACH = (errors.Unavailable, errors.InUse, errors.Busy, errors.NodeOffline)


class Attacher(Protocol):
    """What this use case needs of the volume service."""

    def attach(self, volume_id: str, node: str) -> Attachment: ...
    def detach(self, volume_id: str, node: str) -> None: ...


class LocalNode(Protocol):
    """What this use case needs of the node operations (NodeOps or FakeNodeOps)."""

    def wait_for_device(self, path: str, timeout: float | None = None) -> None: ...
    def filesystem_signature(self, device: str) -> str | None: ...
    def is_mounted(self, target: str) -> bool: ...
    def stage(
        self,
        device: str,
        staging_path: str,
        fs_type: str,
        mkfs_opts: str = "",
        mount_opts: Sequence[str] = (),
    ) -> None: ...
    def unmount(self, target: str) -> None: ...


class LocalAttachment:
    """Attach-and-stage and release-and-detach of volumes on one node; safe to share between threads.

    Callers serialize requests for one volume themselves (they hold its lock around
    each call): the use case keeps no state of its own.
    """

    def __init__(
        self,
        service: Attacher,
        nodeops: LocalNode,
        node: str,
        *,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        volumes_label: str = "volumes",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.nodeops = nodeops
        self.node = node
        self.settle_seconds = settle_seconds
        #: How refusals name the volumes this front end serves ("Docker volumes need ext4, ...").
        self.volumes_label = volumes_label
        self._clock = clock
        self._sleep = sleep

    # -- the settle retry ----------------------------------------------------------------

    def settling(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying briefly while only this node still reports the volume in use.

        After the last user of a volume exits, the kernel drops its mount namespace, and
        with it the last reference to the device, a moment later; a detach or delete
        right after that must not fail on it. In use anywhere else is an answer at once.
        """
        deadline = self._clock() + self.settle_seconds
        while True:
            try:
                return action()
            except errors.InUse as exc:
                nodes = [str(n) for n in exc.details.get("nodes") or ()]
                if nodes != [self.node] or self._clock() >= deadline:
                    raise
            self._sleep(SETTLE_POLL_SECONDS)

    # -- attach and stage ----------------------------------------------------------------

    @contextmanager
    def staged(self, volume: Volume, staging: str, *, name: str) -> Iterator[Attachment]:
        """Attach ``volume`` here and mount its filesystem at ``staging``; the body is the caller's step.

        A failure in any step, or in the body, undoes what this call did: the mount it
        made (a mount that was there before stays) and the resource its attach made
        (a replica that was there before stays). A volume that records no filesystem
        (one made by LINBIT's Python Docker plugin, which ran mkfs itself) is mounted
        with the filesystem its device holds, and refused when that is none we support:
        it is never formatted here.
        """
        with long_operation(volume.id, f"attaching to this node ({self.node})"):
            attachment = self.service.attach(volume.id, self.node)
        mounted = False
        try:
            fs_type = volume.fs_type or self._adopted_filesystem(name, attachment.device_path)
            was_mounted = self.nodeops.is_mounted(staging)
            with long_operation(volume.id, f"mounting on this node ({self.node}), formatting first if blank"):
                self.nodeops.stage(
                    attachment.device_path,
                    staging,
                    fs_type,
                    mkfs_opts=volume.mkfs_opts,
                    mount_opts=volume.mount_opts,
                )
            mounted = not was_mounted
            yield attachment
        except BaseException:
            self._undo(name, volume.id, staging, mounted, attachment.created_by_attach)
            raise

    def _adopted_filesystem(self, name: str, device: str) -> str:
        self.nodeops.wait_for_device(device)
        found = self.nodeops.filesystem_signature(device)
        if found in FILESYSTEMS:
            return str(found)
        raise errors.FailedPrecondition(
            f"volume {name} records no filesystem and its device holds {found or 'nothing'}; "
            f"{self.volumes_label} need {', '.join(FILESYSTEMS)}, and a volume is never "
            "formatted on mount"
        )

    def _undo(self, name: str, volume_id: str, staging: str, mounted: bool, attached: bool) -> None:
        """Best effort: the failure that led here is what the caller reports, not an undo's."""
        if mounted:
            try:
                self.nodeops.unmount(staging)
            except Exception:
                log.exception("could not undo the mount of %s at %s", name, staging)
        if attached:
            try:
                self.service.detach(volume_id, self.node)
            except Exception:
                log.exception("could not undo the attach of %s on %s", name, self.node)

    # -- release -------------------------------------------------------------------------

    def release(self, volume_id: str, name: str, staging: str, attached: bool) -> bool:
        """Unmount ``staging`` and detach what an attach made; False when the detach is left to retry.

        A failed unmount raises (the volume stays staged, nothing is detached); a detach
        that failed for good is logged and counts as done, since retrying cannot help.
        """
        self.nodeops.unmount(staging)
        return not attached or self.detach(volume_id, name)

    def unmount_unless_in_use(self, staging: str) -> bool:
        """Unmount ``staging`` unless a process still has files open on it; whether it was unmounted."""
        try:
            self.nodeops.unmount(staging)
        except errors.InUse:
            return False
        return True

    def detach(self, volume_id: str, name: str) -> bool:
        """Remove the diskless resource an attach made here; False when it must be retried later."""
        try:
            self.settling(lambda: self.service.detach(volume_id, self.node))
        except RETRIED_DETACH as exc:
            log.warning("could not detach %s from %s yet, will retry: %s", name, self.node, exc)
            return False
        except errors.VolumeError as exc:
            log.warning("could not detach %s from %s after unmount: %s", name, self.node, exc)
        return True
