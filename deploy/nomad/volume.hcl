# A replicated LINSTOR volume for Nomad. Create it with: nomad volume create volume.hcl
# parameters are the same keys as a Kubernetes StorageClass of the LINSTOR driver.
id        = "postgres-data"
name      = "postgres-data"
type      = "csi"
plugin_id = "linstor.csi.linbit.com"

capacity_min = "2GiB"
capacity_max = "4GiB"

capability {
  access_mode     = "single-node-writer"
  attachment_mode = "file-system"
}

capability {
  access_mode     = "single-node-reader-only"
  attachment_mode = "file-system"
}

mount_options {
  fs_type     = "ext4"
  mount_flags = ["noatime"]
}

# Keys with '/' must be quoted, so parameters is written as an object.
parameters = {
  "linstor.csi.linbit.com/placementCount"                              = "2"
  "linstor.csi.linbit.com/storagePool"                                 = "pool1"
  "linstor.csi.linbit.com/allowRemoteVolumeAccess"                     = "true"
  "property.linstor.csi.linbit.com/DrbdOptions/PeerDevice/c-max-rate" = "102400"
}
