"""Who writes a volume, as LINSTOR records it: the basis of the two-primaries decision."""

from __future__ import annotations

from csi import capabilities
from csi.testing import Mode, block_cap, mount_cap
from plugin.linstor.records import Resource
from plugin.volume_records import PUBLISHED
from plugin.volumes.shared_writers import writers


def _rsc(node: str, published: str = "", in_use: bool = False) -> Resource:
    return Resource(node=node, name="vol", props={PUBLISHED: published} if published else {}, in_use=in_use)


def test_writers_are_read_write_publications_and_optionally_in_use_nodes() -> None:
    resources = [
        _rsc("a", "MULTI_NODE_MULTI_WRITER:rw"),
        _rsc("b", "MULTI_NODE_READER_ONLY:ro"),
        _rsc("c", in_use=True),  # reported in use, nothing published (yet, or any more)
        _rsc("d", "MULTI_NODE_READER_ONLY:ro,SINGLE_NODE_WRITER:rw"),
    ]
    assert writers(resources, with_in_use=False) == ["a", "d"]
    assert writers(resources, with_in_use=True) == ["a", "c", "d"]
    assert writers([], with_in_use=True) == []


def test_only_read_write_rwx_block_publications_can_bring_a_second_primary() -> None:
    rwx_block = capabilities.parse(block_cap(Mode.MULTI_NODE_MULTI_WRITER))
    assert capabilities.shared_block_writer(rwx_block, readonly=False)
    assert not capabilities.shared_block_writer(rwx_block, readonly=True)
    assert not capabilities.shared_block_writer(capabilities.parse(block_cap(Mode.SINGLE_NODE_WRITER)), False)
    assert not capabilities.shared_block_writer(
        capabilities.parse(mount_cap(Mode.MULTI_NODE_READER_ONLY)), False
    )
