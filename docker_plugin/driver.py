"""What each Docker volume call means for the core and for this node.

The WSGI app (:mod:`docker_plugin.app`) hands decoded requests to :class:`DockerVolumeDriver`;
the driver turns them into :class:`~plugin.volumes.service.VolumeService` calls and the core's
:class:`~plugin.local_attachment.LocalAttachment` (attach, stage, undo; release, detach)
and keeps the per-(volume, ID) mount counts Docker relies on. It owns only what is
Docker's: which volumes are Docker's (the marker), a volume staged once per node under
the mount root, containers handed ``<mount>/data`` (so ``lost+found`` stays out of the
way and Docker's copy-up sees an empty directory, as with LINBIT's plugins), and the
release when the last holder unmounts (the bookkeeping for that, and its recovery after
failures, is :class:`docker_plugin.staging.NodeStaging`). Unmount never needs the
LINSTOR controller: a detach that cannot reach it is done later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docker_plugin.recovery import MountUse, scan_mount_use
from docker_plugin.refcounts import MountRecord, MountStore
from docker_plugin.staging import (
    DEFAULT_RELEASE_DELAY,
    DEFAULT_STALE_GRACE,
    NodeStaging,
)
from plugin import errors
from plugin.local_attachment import DEFAULT_SETTLE_SECONDS
from plugin.models import Volume
from plugin.names import resource_name_for
from plugin.params.docker import parse_docker_options
from plugin.params.filesystems import minimum_size_bytes
from plugin.params.keys import DOCKER_DEFAULT_SIZE
from plugin.progress import under_way

if TYPE_CHECKING:
    from plugin.node.ops import NodeOps
    from plugin.volumes.service import VolumeService

DATA_DIR = "data"
DATA_DIR_MODE = 0o755  # whatever the umask: containers of any user must reach it
DOCKER_MARKER_KEY = "is-linstor-docker-volume"  # stored as Aux/<key>, as LINBIT's Docker plugins did
DOCKER_MARKER = f"Aux/{DOCKER_MARKER_KEY}"
#: LINSTOR's ``props`` filter for definitions with the marker (``is_docker_volume``'s test).
DOCKER_LIST_FILTER = f"{DOCKER_MARKER}=true"
MAX_NAME_CHARS = 1024


@dataclass(frozen=True)
class VolumeInfo:
    """One entry of List/Get, already in Docker's terms."""

    name: str
    mountpoint: str = ""
    created_at: str | None = None
    status: dict[str, Any] | None = None

    def to_docker(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Name": self.name}
        if self.mountpoint:
            out["Mountpoint"] = self.mountpoint
        if self.created_at:
            out["CreatedAt"] = self.created_at
        if self.status is not None:
            out["Status"] = self.status
        return out


def rfc3339(when: datetime | None) -> str | None:
    """Docker decodes CreatedAt into a Go time.Time: it must be RFC 3339 with a zone."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # isoformat is several times cheaper than strftime, and List formats one per volume.
    if when.tzinfo is not UTC:  # stored times are UTC already: no conversion per volume
        when = when.astimezone(UTC)
    return when.isoformat(timespec="seconds")[:19] + "Z"


def is_docker_volume(volume: Volume) -> bool:
    """Made through Docker (by this plugin or LINBIT's, which set the same marker).

    Only these are listed and managed: ``docker volume prune`` must never reach a CSI
    volume or one an operator made with the linstor client.
    """
    return volume.properties.get(DOCKER_MARKER) == "true"


def validate_name(name: object) -> str:
    """Docker accepts any volume name for a plugin; only empty or absurd ones are refused."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgument("the request has no volume Name")
    if "\x00" in name:
        raise errors.InvalidArgument("volume names cannot contain a NUL character")
    if len(name) > MAX_NAME_CHARS:
        raise errors.InvalidArgument(f"volume names are limited to {MAX_NAME_CHARS} characters")
    return name


class DockerVolumeDriver(NodeStaging):
    """Docker's VolumeDriver calls over the core, for one node."""

    def __init__(
        self,
        service: VolumeService,
        nodeops: NodeOps,
        store: MountStore,
        *,
        node: str,
        mount_root: Path,
        defaults: Mapping[str, str] | None = None,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        release_delay: float = DEFAULT_RELEASE_DELAY,
        stale_grace: float = DEFAULT_STALE_GRACE,
        scan: Callable[[], MountUse | None] = scan_mount_use,
    ) -> None:
        super().__init__(
            service,
            nodeops,
            store,
            node=node,
            mount_root=mount_root,
            settle_seconds=settle_seconds,
            release_delay=release_delay,
            stale_grace=stale_grace,
            scan=scan,
        )
        self.defaults = dict(defaults or {})

    # -- helpers -------------------------------------------------------------------

    def _local_mountpoint(self, resource: str) -> str:
        """The container path if this node has the volume staged, else "" (Docker asks again)."""
        record = self.store.get(resource)
        if record is None or record.total <= 0:
            return ""
        return str(Path(record.path) / DATA_DIR)

    def _status(self, volume: Volume) -> dict[str, Any]:
        record = self.store.get(volume.id)
        preparing = [op.describe() for op in under_way(volume.id)]
        return {
            "state": "being prepared: " + "; ".join(preparing) if preparing else "ready",
            "resource": volume.id,
            "size_bytes": volume.size_bytes,
            "fs": volume.fs_type or "none (raw block)",
            "resource_group": volume.resource_group,
            "diskful_nodes": sorted(volume.diskful_nodes),
            "diskless_nodes": sorted(r.node for r in volume.replicas if r.diskless and not r.tie_breaker),
            "in_use_on": sorted(volume.in_use_nodes),
            "mounted_on_this_node": bool(record and record.total > 0),
            "mounts_on_this_node": record.total if record else 0,
        }

    # -- the calls ---------------------------------------------------------------------

    def create(self, name: str, opts: Mapping[str, str] | None) -> None:
        """Idempotent: Docker may retry, and another node may have created the name already."""
        params = parse_docker_options(opts, self.defaults)
        size = params.size_bytes
        if size is None:
            size = max(DOCKER_DEFAULT_SIZE, minimum_size_bytes(params.fs_type))
        params = replace(params, extra={**params.extra, DOCKER_MARKER_KEY: "true"})
        resource = resource_name_for(name)
        with self._lock(resource):
            try:
                volume = self.service.create_volume(name, size, params)
            except errors.AlreadyExists:
                existing = self.service.get_volume(resource)
                if is_docker_volume(existing):
                    raise
                volume = existing
        if not is_docker_volume(volume):
            raise errors.AlreadyExists(
                f"a LINSTOR volume named {name} (resource {volume.id}) exists that was not created "
                "through Docker; it is left alone, choose another name"
            )

    def _docker_volume(self, name: str, resource: str, missing: str) -> Volume:
        """The volume behind a Docker name; volumes made by other clients (CSI, linstor) stay invisible."""
        try:
            volume = self.service.get_volume(resource)
        except errors.NotFound:
            raise errors.NotFound(missing) from None
        if not is_docker_volume(volume):
            raise errors.NotFound(missing)
        return volume

    def remove(self, name: str) -> None:
        resource = resource_name_for(name)
        with self._lock(resource):
            record = self.store.get(resource)
            if record is not None and record.total > 0 and self._release_stale(record, 0.0, "Remove"):
                record = None  # released: no container held it any more
            if record is not None and record.total > 0:
                raise errors.InUse(
                    f"volume {name} is in use on this node ({self.node}) "
                    f"by {record.total} container mount(s)",
                    nodes=[self.node],
                )
            if record is not None:  # unmounted by every container, waiting for its release delay
                self._cancel_release(resource)
                self._release(record)
            try:
                volume = self.service.get_volume(resource)
            except errors.NotFound:
                return  # already gone: success, Docker may repeat a Remove
            if not is_docker_volume(volume):
                raise errors.FailedPrecondition(
                    f"volume {name} (LINSTOR resource {resource}) was not created through Docker; "
                    "it is left alone, remove it with the tool that created it"
                )
            try:
                self.local.settling(lambda: self.service.delete_volume(resource))  # a missing volume is fine
            except errors.InUse as exc:
                nodes = [str(n) for n in exc.details.get("nodes") or ()]
                where = ", ".join(nodes) if nodes else "another node"
                raise errors.InUse(
                    f"volume {name} is in use on {where}; stop the containers using it there first",
                    nodes=nodes,
                ) from None

    def mount(self, name: str, mount_id: str) -> str:
        resource = resource_name_for(name)
        with self._lock(resource):
            record = self.store.get(resource)
            if record is not None and self.nodeops.is_mounted(record.path):
                # staged already: in use, or released a moment ago and waiting for its delay
                self._cancel_release(resource)
                self.store.acquire(record, mount_id)
                self._update_gauge()
                return str(Path(record.path) / DATA_DIR)
            path = self._stage(name, resource, record, mount_id)
            self._update_gauge()
            return path

    def _stage(self, name: str, resource: str, record: MountRecord | None, mount_id: str) -> str:
        """Attach, mount at the staging path and count the first holder; undo all on failure."""
        volume = self._docker_volume(
            name, resource, f"volume {name} does not exist; create it with docker volume create"
        )
        elsewhere = sorted(n for n in volume.in_use_nodes if n != self.node)
        if elsewhere:
            raise errors.InUse(
                f"volume {name} is in use on {', '.join(elsewhere)}; a LINSTOR volume has one writer "
                "at a time, stop the containers using it there first",
                nodes=elsewhere,
            )
        staging = self.staging_path(resource)
        data = staging / DATA_DIR
        with self.local.staged(volume, str(staging), name=name) as attachment:
            self.nodeops.make_directory(str(data), DATA_DIR_MODE)
            attached = attachment.created_by_attach or bool(record and record.attached)
            seed = MountRecord(resource=resource, name=name, path=str(staging), attached=attached)
            self.store.acquire(seed, mount_id)
        return str(data)

    def unmount(self, name: str, mount_id: str) -> None:
        """Idempotent: an unknown ID or an unmounted volume is success (Docker repeats after restarts).

        The last holder's Unmount releases the volume after ``release_delay`` seconds: Docker
        mounts and unmounts once before every container start (to copy image content in), and
        the real Mount that follows then finds the volume still staged.
        """
        resource = resource_name_for(name)
        with self._lock(resource):
            record = self.store.release(resource, mount_id)
            if record is None:
                return
            if record.total > 0:
                self._release_stale(record, self.stale_grace, "Unmount")
                return
            if self.release_delay > 0:
                self._schedule_release(resource)
                return
            self._release(record)

    def path(self, name: str) -> str:
        return self._local_mountpoint(resource_name_for(name))

    def get(self, name: str) -> VolumeInfo:
        resource = resource_name_for(name)
        try:
            volume = self._docker_volume(name, resource, f"volume {name} does not exist")
        except errors.Unavailable as exc:
            # Docker calls Get for every known volume when it starts, and forgets the labels
            # and options of any volume whose Get fails. A volume mounted here certainly
            # exists, so it is answered from local knowledge until the controller is back.
            record = self.store.get(resource)
            if record is None or record.total <= 0 or record.name != name:
                raise
            return VolumeInfo(
                name=name,
                mountpoint=str(Path(record.path) / DATA_DIR),
                status={"resource": resource, "mounts_on_this_node": record.total, "warning": str(exc)},
            )
        return VolumeInfo(
            name=volume.name or name,
            mountpoint=self._local_mountpoint(resource),
            created_at=rfc3339(volume.created_at),
            status=self._status(volume),
        )

    def list(self) -> list[VolumeInfo]:
        """Docker's volumes (``docker volume ls`` waits for this).

        One REST call up to ``LS_LIST_PAGE_SIZE`` volumes; only definitions with the Docker
        marker (``is_docker_volume``'s test, as a LINSTOR filter the core also checks, for
        controllers that ignore it). Names and creation times are all a list shows, so only
        those are read from each definition, and the mount table is read once.
        """
        staged = {r.resource: str(Path(r.path) / DATA_DIR) for r in self.store.records() if r.total > 0}
        return [
            VolumeInfo(name=v.name, mountpoint=staged.get(v.id, ""), created_at=rfc3339(v.created_at))
            for v in self.service.list_summaries(props=(DOCKER_LIST_FILTER,))
        ]
