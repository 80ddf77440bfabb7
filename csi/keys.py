"""Context keys and topology keys shared with LINSTOR's official CSI driver.

PVs provisioned by the official driver carry these keys in their volume attributes, and
Nodes carry the topology labels; using the same spelling is what makes this driver a
drop-in replacement.
"""

from __future__ import annotations

PREFIX = "linstor.csi.linbit.com"

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

# topology segments
TOPOLOGY_HOSTNAME = "linbit.com/hostname"
TOPOLOGY_POOL_PREFIX = "linbit.com/sp-"

# snapshot class parameters (snap.linstor.csi.linbit.com/*) live in plugin.backups.snapshot_class

SNAPSHOT_ID_SCHEME = "InCluster://"

DEFAULT_DRIVER_NAME = PREFIX
# What the official driver reports: DRBD's own limit, effectively "no limit".
DEFAULT_MAX_VOLUMES_PER_NODE = 1048576
