"""What a user may ask of a volume: parameters, options and the rules they follow.

CSI StorageClass parameters and Docker ``-o`` options become one validated
``VolumeParams``; the value parsers, the filesystem and mount
option allow-lists, the supported filesystems, IO limits, placement filters and the
resource-group name of a parameter set live beside them, each fact defined once.
"""
