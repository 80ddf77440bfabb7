"""JSON schemas for the custom resources the Kubernetes manifests use.

The API schemas ``kubernetes-validate`` carries cover built-in kinds only. These are the
shapes of the custom resources, written from their CRDs' documentation and limited to the
fields the manifests may use: anything else is an error, as in strict validation.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_METADATA: Schema = {"type": "object", "required": ["name"]}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
}
# Prometheus operator durations: 30s, 1m, 1h30m ...
_NAME: Schema = {"type": "string", "minLength": 1}
_DURATION: Schema = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}


def _object(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    """A closed object: the named properties only, as strict validation reads a CRD."""
    schema: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _custom_resource(api_version: str, kind: str, spec: Schema, metadata: Schema = _METADATA) -> Schema:
    """A namespaced-or-not custom resource with a ``spec``: the four top-level fields only."""
    return _object(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": metadata, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


def _one_source(**sources: Schema) -> Schema:
    """A snapshot's ``spec.source``: exactly one of the named ways."""
    return {**_object(sources), "minProperties": 1, "maxProperties": 1}


# snapshot.storage.k8s.io/v1 VolumeSnapshotClass (external-snapshotter CRD).
VOLUME_SNAPSHOT_CLASS: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "driver", "deletionPolicy"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "snapshot.storage.k8s.io/v1"},
        "kind": {"const": "VolumeSnapshotClass"},
        "metadata": _METADATA,
        "driver": {"type": "string", "minLength": 1},
        "deletionPolicy": {"enum": ["Delete", "Retain"]},
        "parameters": _STRING_MAP,
    },
}

# groupsnapshot.storage.k8s.io/v1beta2 VolumeGroupSnapshotClass (external-snapshotter CRD,
# v1beta2 is its storage version since external-snapshotter 8.3).
VOLUME_GROUP_SNAPSHOT_CLASS: Schema = {
    **VOLUME_SNAPSHOT_CLASS,
    "properties": {
        **VOLUME_SNAPSHOT_CLASS["properties"],
        "apiVersion": {"const": "groupsnapshot.storage.k8s.io/v1beta2"},
        "kind": {"const": "VolumeGroupSnapshotClass"},
    },
}

# snapshot.storage.k8s.io/v1 VolumeSnapshot: from a PVC or a pre-provisioned content.
VOLUME_SNAPSHOT: Schema = _custom_resource(
    "snapshot.storage.k8s.io/v1",
    "VolumeSnapshot",
    _object(
        {
            "volumeSnapshotClassName": _NAME,
            "source": _one_source(persistentVolumeClaimName=_NAME, volumeSnapshotContentName=_NAME),
        },
        ("source",),
    ),
)

# groupsnapshot.storage.k8s.io/v1beta2 VolumeGroupSnapshot: PVCs by label selector, or a
# pre-provisioned group content.
VOLUME_GROUP_SNAPSHOT: Schema = _custom_resource(
    "groupsnapshot.storage.k8s.io/v1beta2",
    "VolumeGroupSnapshot",
    _object(
        {
            "volumeGroupSnapshotClassName": _NAME,
            "source": _one_source(selector=_LABEL_SELECTOR, volumeGroupSnapshotContentName=_NAME),
        },
        ("source",),
    ),
)

# monitoring.coreos.com/v1 ServiceMonitor (Prometheus operator CRD).
SERVICE_MONITOR: Schema = _custom_resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
            },
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "targetPort": {"type": ["string", "integer"]},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array"},
                        "metricRelabelings": {"type": "array"},
                    },
                },
            },
        },
    },
)

_COMPONENT: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"enabled": {"type": "boolean"}, "podTemplate": {"type": "object"}},
}

# piraeus.io/v1 LinstorCluster (Piraeus operator v2 CRD, cluster scoped).
LINSTOR_CLUSTER: Schema = _custom_resource(
    "piraeus.io/v1",
    "LinstorCluster",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "nodeSelector": _STRING_MAP,
            "nodeAffinity": {"type": "object"},
            "repository": {"type": "string"},
            "properties": {"type": "array"},
            "linstorPassphraseSecret": {"type": "string"},
            "patches": {"type": "array"},
            "externalController": {"type": "object", "required": ["url"]},
            "controller": _COMPONENT,
            "csiController": _COMPONENT,
            "csiNode": _COMPONENT,
            "highAvailabilityController": _COMPONENT,
            "internalTLS": {"type": "object"},
            "apiTLS": {"type": "object"},
        },
    },
    metadata={**_METADATA, "not": {"required": ["namespace"]}},
)

BY_KIND: dict[str, Schema] = {
    "VolumeSnapshotClass": VOLUME_SNAPSHOT_CLASS,
    "VolumeGroupSnapshotClass": VOLUME_GROUP_SNAPSHOT_CLASS,
    "VolumeSnapshot": VOLUME_SNAPSHOT,
    "VolumeGroupSnapshot": VOLUME_GROUP_SNAPSHOT,
    "ServiceMonitor": SERVICE_MONITOR,
    "LinstorCluster": LINSTOR_CLUSTER,
}
