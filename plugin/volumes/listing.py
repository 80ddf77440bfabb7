"""Resource definitions joined with their resources, both read a page at a time.

Listing every volume with its replicas used to read all definitions and all resources
into memory first. Both lists come from LINSTOR in the same order (definition name,
upper-cased; resources then by node), so one pass over both joins them holding one page
of each: a definition is handed out with its resources as soon as they are read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from plugin.linstor.client import LinstorClient
from plugin.linstor.paging import props_match
from plugin.linstor.records import DefinitionHead, Resource, ResourceDefinition


def heads(client: LinstorClient, props: Sequence[str] = ()) -> Iterator[DefinitionHead]:
    """What a list of names needs of each resource definition with ``props`` (filtered by
    LINSTOR and checked again here), without replicas."""
    listed = client.iter_definition_heads(props=props)
    return (head for head in listed if props_match(head.props, props)) if props else listed


def definitions(
    client: LinstorClient, with_replicas: bool
) -> Iterator[tuple[ResourceDefinition, list[Resource]]]:
    """Each resource definition with its resources (none unless ``with_replicas``)."""
    rds = client.iter_resource_definitions(with_volume_definitions=True)
    if not with_replicas:
        for rd in rds:
            yield rd, []
        return
    resources = client.iter_resources()
    pending = next(resources, None)
    for rd in rds:
        name = rd.name.upper()
        # resources of definitions not listed (made or deleted between reads) are skipped
        while pending is not None and pending.name.upper() < name:
            pending = next(resources, None)
        mine = []
        while pending is not None and pending.name.upper() == name:
            mine.append(pending)
            pending = next(resources, None)
        yield rd, mine
