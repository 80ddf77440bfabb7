"""Where a volume can be used from: the ``allowRemoteVolumeAccess`` policy, as LINBIT's driver applies it.

The policy is ``true`` (anywhere), ``false`` (only nodes with a replica) or a list of
``fromSame`` rules: a node without a replica may use the volume when it shares every
label of one rule with a node that holds a replica. A node's labels are its LINSTOR
properties under the driver's property namespace, plus ``linbit.com/hostname``, the same
segments NodeGetInfo reports. The accessible topology of a volume is, for each diskful
node and each rule, the node's values of that rule's labels; a rule whose labels a node
lacks gives the empty segment, which means "anywhere" (no topology at all). Redundant
segments (a stricter copy of a broader one) are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from plugin.params import placement

if TYPE_CHECKING:
    from plugin.linstor.client import LinstorClient
    from plugin.models import Volume

Rules = tuple[tuple[str, ...], ...]
#: ``false``: the rule LINBIT's driver uses for "local only".
LOCAL_ONLY: Rules = ((placement.HOSTNAME_KEY,),)


def effective_rules(allow: bool, rules: Rules) -> Rules | None:
    """The rules that decide access; None means "from anywhere"."""
    if not allow:
        return LOCAL_ONLY
    return rules or None


def policy_text(allow: bool, rules: Rules) -> str:
    """The ``remote-access-policy`` volume-context value, spelled as LINBIT's driver writes it."""
    if not allow:
        return "false"
    if not rules:
        return "true"
    import yaml  # only fromSame rules need it; importing it costs every daemon start

    document = [{"fromSame": list(rule)} for rule in rules]
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False)


def prune(segments: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Drop duplicates and segments a broader one already covers (fewest labels first)."""
    result: list[dict[str, str]] = []
    for segment in sorted((dict(s) for s in segments), key=lambda s: (len(s), sorted(s.items()))):
        if any(all(segment.get(k) == v for k, v in kept.items()) for kept in result):
            continue
        result.append(segment)
    return result


def accessible_segments(
    rules: Rules | None, node_segments: Sequence[Mapping[str, str]]
) -> list[dict[str, str]]:
    """Segments from where a volume with replicas on these nodes may be used; [] is anywhere."""
    if rules is None:
        return []
    found: list[dict[str, str]] = []
    for segments in node_segments:
        for rule in rules:
            found.append({label: segments[label] for label in rule if label in segments})
    pruned = prune(found)
    if any(not segment for segment in pruned):
        return []  # a node lacks the labels of a rule: nothing restricts access
    return pruned


def node_segments(
    client: LinstorClient, nodes: Sequence[str], property_namespace: str
) -> list[dict[str, str]]:
    """Each node's labels: properties under the namespace, and its host name."""
    if not nodes:
        return []
    prefix = property_namespace + "/"
    result = []
    listed = {n.name.lower(): n.props for n in client.list_nodes(nodes=nodes)}
    for node in nodes:
        props = listed.get(node.lower(), {})
        segments = {k[len(prefix) :]: v for k, v in props.items() if k.startswith(prefix)}
        segments[placement.HOSTNAME_KEY] = node
        result.append(segments)
    return result


def volume_accessible_segments(
    client: LinstorClient, volume: Volume, allow: bool, rules: Rules, property_namespace: str
) -> list[dict[str, str]]:
    """The accessible topology of a volume under its policy; [] is anywhere."""
    effective = effective_rules(allow, rules)
    if effective is None:
        return []
    diskful = sorted(set(volume.diskful_nodes))
    if effective == LOCAL_ONLY:
        return [{placement.HOSTNAME_KEY: node} for node in diskful]
    return accessible_segments(effective, node_segments(client, diskful, property_namespace))
