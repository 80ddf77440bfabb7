"""Keep the LINSTOR remote of a snapshot class in step with the class.

A missing remote is created from the class and its secret; one whose visible settings differ
(endpoint, bucket, region, path style; URL, cluster id) is modified, with the keys of the
secret. LINSTOR never returns keys, so they cannot be compared: a remote whose visible
settings match is left alone (no request per backup, and a remote made by an administrator
keeps its keys). No message ever contains a key.
"""

from __future__ import annotations

from typing import Any

from plugin.backups.snapshot_class import SnapshotClass, missing_for_new_remote
from plugin.errors import AlreadyExists, FailedPrecondition, InvalidArgument, OperationFailed
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Remote


def _find(remotes: list[Remote], name: str) -> Remote | None:
    return next((r for r in remotes if r.name.lower() == name.lower()), None)


def _visible(remote: Remote) -> dict[str, Any]:
    """The remote's settings LINSTOR shows, under the names :func:`_wanted` gives them."""
    return {
        "endpoint": remote.endpoint,
        "bucket": remote.bucket,
        "region": remote.region,
        "use_path_style": remote.use_path_style,
        "url": remote.url,
        "cluster_id": remote.cluster_id,
    }


def _wanted(cls: SnapshotClass) -> dict[str, Any]:
    """The remote's settings the class states (unset keys are left as the remote has them)."""
    if cls.type == "S3":
        fields = {
            "endpoint": cls.s3_endpoint,
            "bucket": cls.s3_bucket,
            "region": cls.s3_signing_region,
        }
        wanted: dict[str, Any] = {k: v for k, v in fields.items() if v}
        wanted["use_path_style"] = cls.s3_use_path_style
        return wanted
    fields = {"url": cls.linstor_target_url, "cluster_id": cls.linstor_target_cluster_id}
    return {k: v for k, v in fields.items() if v}


def _with_keys(cls: SnapshotClass, body: dict[str, Any]) -> dict[str, Any]:
    if cls.type == "S3" and cls.access_key:
        body = {**body, "access_key": cls.access_key, "secret_key": cls.secret_key}
    return body


def ensure_remote(client: LinstorClient, cls: SnapshotClass) -> str:
    """Create or update the class's remote; returns what was done ("kept", "created", "modified")."""
    found = _find(client.list_remotes(), cls.remote_name)
    wanted = _wanted(cls)
    if found is None:
        missing = missing_for_new_remote(cls)
        if missing:
            raise InvalidArgument(
                f"LINSTOR has no remote {cls.remote_name!r} and the snapshot class cannot create it: "
                f"missing {', '.join(missing)}"
            )
        body = _with_keys(cls, {"remote_name": cls.remote_name, **wanted})
        try:
            if cls.type == "S3":
                client.create_s3_remote(body)
            else:
                client.create_linstor_remote(body)
        except AlreadyExists:
            pass  # made by a concurrent call: the next request compares it
        except (OperationFailed, InvalidArgument) as exc:
            raise _refused(cls, "create", exc) from None
        return "created"
    if found.kind != cls.type:
        raise InvalidArgument(
            f"LINSTOR remote {cls.remote_name!r} is an {found.kind} remote, but the snapshot class asks for "
            f"type {cls.type}; use another remote-name"
        )
    current = _visible(found)
    differs = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not differs:
        return "kept"
    body = _with_keys(cls, {"remote_name": found.name or cls.remote_name, **wanted})
    try:
        if cls.type == "S3":
            client.modify_s3_remote(str(body["remote_name"]), body)
        else:
            client.modify_linstor_remote(str(body["remote_name"]), body)
    except (OperationFailed, InvalidArgument) as exc:
        raise _refused(cls, "update", exc) from None
    return "modified"


def _refused(cls: SnapshotClass, what: str, exc: OperationFailed | InvalidArgument) -> FailedPrecondition:
    """LINSTOR checks a remote when it is made (an S3 bucket is listed): say which class setting to fix."""
    hint = (
        "check s3-endpoint, s3-bucket, s3-signing-region and the access-key/secret-key secret"
        if cls.type == "S3"
        else "check linstor-target-url and linstor-target-cluster-id"
    )
    return FailedPrecondition(
        f"LINSTOR could not {what} remote {cls.remote_name!r} from the snapshot class ({hint}): "
        f"{exc.message}",
        **{k: v for k, v in exc.details.items() if k in ("code", "status", "endpoint")},
    )
