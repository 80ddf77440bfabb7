"""LINSTOR REST calls about snapshots and where they are shipped: remotes and backups.

One small method per call; answers come back as :mod:`plugin.linstor.records`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from plugin.linstor import features
from plugin.linstor import retcodes as rc
from plugin.linstor.records import (
    Backup,
    BackupInfo,
    Remote,
    SnapshotDefinition,
    backups_from_wire,
    many,
    remotes_from_wire,
)
from plugin.linstor.transport import SPACE_206, Entries, Transport


class SnapshotEndpoints(Transport):
    """Snapshots and restores from them, backup remotes, and backups (S3 or another cluster)."""

    #: The controller's version, for request fields older controllers lack (set by the client).
    features: features.ControllerFeatures

    # ------------------------------------------------------------------ snapshots

    def create_snapshot(self, name: str, snapshot: str, props: Mapping[str, str] | None = None) -> Entries:
        body: dict[str, Any] = {"name": snapshot}
        if props:
            self.features.require(features.SNAPSHOT_PROPS)
            body["snapshot_definition_props"] = dict(props)
        return rc.entries_of(self.request("POST", "/v1/resource-definitions/{}/snapshots", name, body=body))

    def create_snapshots(
        self,
        pairs: Sequence[tuple[str, str]],
        props: Mapping[str, str] | None = None,
        per_resource: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Entries:
        """Crash-consistent snapshots of several volumes at once: (resource, snapshot) pairs.

        LINSTOR makes them in one transaction and suspends I/O on all before taking any.
        ``props`` go on every snapshot definition, ``per_resource[resource]`` on that one's.
        """
        specs = []
        for resource, snapshot in pairs:
            merged = {**(props or {}), **((per_resource or {}).get(resource) or {})}
            spec: dict[str, Any] = {"resource_name": resource, "name": snapshot}
            if merged:
                spec["snapshot_definition_props"] = merged
            specs.append(spec)
        return rc.entries_of(self.request("POST", "/v1/actions/snapshot/multi", body={"snapshots": specs}))

    def get_snapshot(self, name: str, snapshot: str) -> SnapshotDefinition:
        return SnapshotDefinition.from_wire(
            self.request("GET", "/v1/resource-definitions/{}/snapshots/{}", name, snapshot)
        )

    def list_snapshots(self, name: str) -> list[SnapshotDefinition]:
        return many(
            SnapshotDefinition.from_wire, self.request("GET", "/v1/resource-definitions/{}/snapshots", name)
        )

    def view_snapshots(self, resources: Sequence[str] = ()) -> list[SnapshotDefinition]:
        params = {"resources": list(resources)} if resources else None
        return many(SnapshotDefinition.from_wire, self.request("GET", "/v1/view/snapshots", params=params))

    def delete_snapshot(self, name: str, snapshot: str) -> Entries:
        return rc.entries_of(
            self.request("DELETE", "/v1/resource-definitions/{}/snapshots/{}", name, snapshot)
        )

    def restore_volume_definition(self, source: str, snapshot: str, target: str) -> Entries:
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/snapshot-restore-volume-definition/{}",
                source,
                snapshot,
                body={"to_resource": target},
            )
        )

    def restore_resource(self, source: str, snapshot: str, target: str, nodes: Sequence[str] = ()) -> Entries:
        body: dict[str, Any] = {"to_resource": target}
        if nodes:
            body["nodes"] = list(nodes)
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/snapshot-restore-resource/{}",
                source,
                snapshot,
                body=body,
                overrides=SPACE_206,
            )
        )

    # ------------------------------------------------------------------ remotes (backup targets)

    def list_remotes(self) -> list[Remote]:
        """Every remote of every kind; secrets are never returned."""
        return remotes_from_wire(self.request("GET", "/v1/remotes"))

    def create_s3_remote(self, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("POST", "/v1/remotes/s3", body=dict(remote)))

    def modify_s3_remote(self, name: str, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("PUT", "/v1/remotes/s3/{}", name, body=dict(remote)))

    def create_linstor_remote(self, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("POST", "/v1/remotes/linstor", body=dict(remote)))

    def modify_linstor_remote(self, name: str, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("PUT", "/v1/remotes/linstor/{}", name, body=dict(remote)))

    # ------------------------------------------------------------------ backups

    def create_backup(self, remote: str, resource: str, snapshot: str, incremental: bool) -> Entries:
        """Snapshot ``resource`` as ``snapshot`` and ship it to an S3 remote (in the background)."""
        body = {"rsc_name": resource, "snap_name": snapshot, "incremental": incremental}
        return rc.entries_of(self.request("POST", "/v1/remotes/{}/backups", remote, body=body))

    def ship_backup(self, remote: str, ship: Mapping[str, Any]) -> Entries:
        """Snapshot and ship a resource to another LINSTOR cluster (in the background)."""
        return rc.entries_of(self.request("POST", "/v1/remotes/{}/backups/ship", remote, body=dict(ship)))

    def list_backups(self, remote: str, resource: str = "", snapshot: str = "") -> list[Backup]:
        params = {k: v for k, v in (("rsc_name", resource), ("snap_name", snapshot)) if v}
        return backups_from_wire(self.request("GET", "/v1/remotes/{}/backups", remote, params=params or None))

    def backup_info(self, remote: str, resource: str, snapshot: str) -> BackupInfo:
        body = {"src_rsc_name": resource, "src_snap_name": snapshot}
        return BackupInfo.from_wire(self.request("POST", "/v1/remotes/{}/backups/info", remote, body=body))

    def restore_backup(self, remote: str, restore: Mapping[str, Any]) -> Entries:
        return rc.entries_of(
            self.request(
                "POST", "/v1/remotes/{}/backups/restore", remote, body=dict(restore), overrides=SPACE_206
            )
        )

    def delete_backup(self, remote: str, backup_id: str, cascading: bool = False) -> Entries:
        params: dict[str, Any] = {"id": backup_id}
        if cascading:
            params["cascading"] = "true"
        return rc.entries_of(self.request("DELETE", "/v1/remotes/{}/backups", remote, params=params))

    def abort_backup(
        self, remote: str, resource: str, *, create: bool = True, restore: bool = False
    ) -> Entries:
        body = {"rsc_name": resource, "create": create, "restore": restore}
        return rc.entries_of(self.request("POST", "/v1/remotes/{}/backups/abort", remote, body=body))
