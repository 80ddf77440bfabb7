"""VolumeSnapshotClass parameters (``snap.linstor.csi.linbit.com/*``) and secrets, validated.

The keys, values and secret names are LINBIT's driver's, so its snapshot classes work as they
are. Secrets (``access-key``, ``secret-key``) are kept out of ``repr`` and never put into a
message; a problem with them names the secret, not its value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from plugin import names
from plugin.errors import InvalidArgument
from plugin.params.values import BadValue, parse_bool

PREFIX = "snap.linstor.csi.linbit.com/"
TYPES = {"incluster": "InCluster", "s3": "S3", "linstor": "Linstor"}
ACCESS_KEY = "access-key"
SECRET_KEY = "secret-key"
BACKUP_SECRETS = (ACCESS_KEY, SECRET_KEY)


@dataclass(frozen=True)
class KeySpec:
    """One snapshot class key: its field, how it parses, what the reference page says."""

    name: str
    field: str
    type: str
    default: str
    description: str
    parse: Callable[[str], Any] = str


def _type(value: str) -> str:
    kind = TYPES.get(value.strip().lower())
    if kind is None:
        raise BadValue("expected InCluster, S3 or Linstor")
    return kind


def _url(value: str) -> str:
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadValue("expected an http:// or https:// URL")
    return value.strip()


def _count(value: str) -> int:
    text = value.strip()
    if not text.isdigit():
        raise BadValue("expected a whole number, 0 or more")
    return int(text)


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def _duration(value: str) -> float:
    """Go's duration form, as LINBIT's driver reads it: ``168h``, ``1h30m``, ``90s``; in seconds."""
    text = value.strip()
    parts = _DURATION_RE.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise BadValue("expected a duration such as 168h, 24h, 1h30m or 90m")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _remote_name(value: str) -> str:
    if not names.is_valid_resource_name(value.strip()):
        raise BadValue(f"expected a LINSTOR remote name: 2-48 characters, {names.NAME_RULE}")
    return value.strip()


def _pool(value: str) -> str:
    if not names.is_valid_storage_pool_name(value.strip()):
        raise BadValue(f"expected a storage pool name: 3-48 characters, {names.NAME_RULE}")
    return value.strip()


KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        "type",
        "type",
        "InCluster, S3, Linstor",
        "InCluster",
        "Where the snapshot lives: a LINSTOR snapshot in this cluster, a backup in an S3 bucket, "
        "or a backup in another LINSTOR cluster.",
        _type,
    ),
    KeySpec(
        "remote-name",
        "remote_name",
        "name",
        "-",
        "The LINSTOR remote to ship to; required for S3 and Linstor. It is created from the other "
        "keys when missing and updated when they differ.",
        _remote_name,
    ),
    KeySpec(
        "delete-local",
        "delete_local",
        "boolean",
        "false",
        "Delete the local LINSTOR snapshot once the backup has been shipped. Not allowed with InCluster.",
        parse_bool,
    ),
    KeySpec(
        "allow-incremental",
        "allow_incremental",
        "boolean",
        "false",
        "S3: ship only the changes since the previous backup of the volume in this remote (LINSTOR "
        "ships a full backup when there is none to base on).",
        parse_bool,
    ),
    KeySpec(
        "max-increments",
        "max_increments",
        "whole number",
        "0 (no limit)",
        "S3 with allow-incremental: after this many incremental backups in a row the next one is full, "
        "so older chains can be deleted.",
        _count,
    ),
    KeySpec(
        "full-snapshot-after",
        "full_snapshot_after",
        "duration (168h, 1h30m)",
        "- (no limit)",
        "S3 with allow-incremental: once the chain's full backup is this old, the next backup is full.",
        _duration,
    ),
    KeySpec(
        "s3-endpoint",
        "s3_endpoint",
        "URL",
        "-",
        "S3: the endpoint, e.g. https://s3.us-west-2.amazonaws.com.",
        _url,
    ),
    KeySpec("s3-bucket", "s3_bucket", "string", "-", "S3: the bucket backups are written to."),
    KeySpec(
        "s3-signing-region",
        "s3_signing_region",
        "string",
        "-",
        "S3: the region requests are signed for, e.g. us-west-2.",
    ),
    KeySpec(
        "s3-use-path-style",
        "s3_use_path_style",
        "boolean",
        "false",
        "S3: address the bucket as <endpoint>/<bucket> instead of <bucket>.<endpoint>.",
        parse_bool,
    ),
    KeySpec(
        "linstor-target-url",
        "linstor_target_url",
        "URL",
        "-",
        "Linstor: the REST URL of the target cluster's controller, e.g. http://linstor-b:3370.",
        _url,
    ),
    KeySpec(
        "linstor-target-cluster-id",
        "linstor_target_cluster_id",
        "string",
        "-",
        "Linstor: the target cluster's id (`linstor controller list-properties`, Cluster/LocalID).",
    ),
    KeySpec(
        "linstor-target-storage-pool",
        "linstor_target_storage_pool",
        "name",
        "-",
        "Linstor: the storage pool the target cluster keeps the backup in.",
        _pool,
    ),
)
_BY_NAME = {spec.name: spec for spec in KEYS}


@dataclass(frozen=True)
class SnapshotClass:
    type: str = "InCluster"
    remote_name: str = ""
    delete_local: bool = False
    allow_incremental: bool = False
    max_increments: int = 0
    full_snapshot_after: float = 0.0  # seconds; 0: no limit
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_signing_region: str = ""
    s3_use_path_style: bool = False
    linstor_target_url: str = ""
    linstor_target_cluster_id: str = ""
    linstor_target_storage_pool: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    @property
    def remote(self) -> bool:
        return self.type != "InCluster"


def parse_snapshot_class(
    parameters: Mapping[str, str], secrets: Mapping[str, str] | None = None
) -> SnapshotClass:
    """The class's keys (others, such as the snapshotter's ``csi.storage.k8s.io/*``, are skipped)."""
    values: dict[str, Any] = {}
    for key, raw in parameters.items():
        if not key.lower().startswith(PREFIX):
            continue
        spec = _BY_NAME.get(key[len(PREFIX) :].lower())
        if spec is None:
            known = ", ".join(s.name for s in KEYS)
            raise InvalidArgument(f"unknown snapshot parameter {key!r}; known keys under {PREFIX}: {known}")
        if not raw.strip():
            continue
        try:
            values[spec.field] = spec.parse(raw)
        except BadValue as exc:
            raise InvalidArgument(f"snapshot parameter {key}: {raw!r} is not valid ({exc})") from None
    secrets = secrets or {}
    values["access_key"] = secrets.get(ACCESS_KEY, "")
    values["secret_key"] = secrets.get(SECRET_KEY, "")
    result = SnapshotClass(**values)
    _check(result)
    return result


def _check(cls: SnapshotClass) -> None:
    if not cls.remote:
        if cls.delete_local:
            raise InvalidArgument(f"{PREFIX}delete-local cannot be used with in-cluster snapshots")
        return
    if not cls.remote_name:
        raise InvalidArgument(f"snapshots of type {cls.type} need {PREFIX}remote-name")
    if bool(cls.access_key) != bool(cls.secret_key):
        missing = SECRET_KEY if cls.access_key else ACCESS_KEY
        raise InvalidArgument(
            f"the snapshot secret has only one of {ACCESS_KEY} and {SECRET_KEY}; add {missing}"
        )


def missing_for_new_remote(cls: SnapshotClass) -> list[str]:
    """What a class lacks to create its remote (an existing remote needs none of it)."""
    if cls.type == "S3":
        needed = [
            ("s3-endpoint", cls.s3_endpoint),
            ("s3-bucket", cls.s3_bucket),
            ("s3-signing-region", cls.s3_signing_region),
        ]
        missing = [f"{PREFIX}{k}" for k, v in needed if not v]
        missing += [
            f"secret {k}" for k, v in ((ACCESS_KEY, cls.access_key), (SECRET_KEY, cls.secret_key)) if not v
        ]
        return missing
    needed = [
        ("linstor-target-url", cls.linstor_target_url),
        ("linstor-target-cluster-id", cls.linstor_target_cluster_id),
    ]
    return [f"{PREFIX}{k}" for k, v in needed if not v]
