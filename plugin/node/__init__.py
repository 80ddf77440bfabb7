"""Everything the core does to the host: devices, filesystems, mounts, by concern.

- ``commands``: running a command (argument list, timeout, no shell) and its result;
- ``commandlines``: building mkfs, mount and remount argument lists, parsing tool output;
- ``host``: the shared facts (mount table, device numbers, signatures, mount points);
- ``formatting``, ``mounting``, ``unmounting``, ``growing``, ``health``: one concern each;
- ``paths``: what front ends ask about host paths (exists, directory, same device);
- ``native``: the ``blkid -p`` probe (libblkid) and mounts (mount(2)) done in-process, tools as fallback;
- ``ops``: :class:`~plugin.node.ops.NodeOps`, the façade, and the staging sequence;
- ``fake``: :class:`~plugin.node.fake.FakeNodeOps`, the same interface in memory, for tests;
- ``blockdev``, ``mounttable``: device facts from sysfs and ioctls; the kernel's mount table.
"""
