"""Context keys shared with LINSTOR's official CSI driver.

PVs provisioned by the official driver carry these keys in their volume attributes; using
the same spelling is what makes this driver a drop-in replacement.
"""

from __future__ import annotations

from plugin.params.model import CSI_NAMESPACE

#: The official driver's name, which namespaces its context keys as it does its parameters.
PREFIX = CSI_NAMESPACE

# volume_context (CreateVolume answer, handed back on publish/stage)
USES_VOLUME_CONTEXT = f"{PREFIX}/uses-volume-context"
MOUNT_OPTIONS = f"{PREFIX}/mount-options"
POST_MOUNT_XFS_OPTS = f"{PREFIX}/post-mount-xfs-opts"
REMOTE_ACCESS_POLICY = f"{PREFIX}/remote-access-policy"

# publish_context (ControllerPublishVolume answer, handed to NodeStage/NodePublish)
USES_PUBLISH_CONTEXT = f"{PREFIX}/uses-publish-context"
DEVICE_PATH = f"{PREFIX}/device-path"
FS_TYPE = f"{PREFIX}/fs-type"
# Ours alone (LINBIT's driver has no PUBLISH_READONLY): "true" when this publication is read-only.
READ_ONLY = f"{PREFIX}/read-only"

# topology segment keys live in plugin.params.placement (HOSTNAME_KEY, POOL_KEY_PREFIX)

# snapshot class parameters (snap.linstor.csi.linbit.com/*) live in plugin.backups.snapshot_class

SNAPSHOT_ID_SCHEME = "InCluster://"

DEFAULT_DRIVER_NAME = PREFIX
# What the official driver reports: DRBD's own limit, effectively "no limit".
DEFAULT_MAX_VOLUMES_PER_NODE = 1048576
