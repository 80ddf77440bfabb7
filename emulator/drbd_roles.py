"""DRBD roles: which nodes hold a volume Primary, and when a second one may join.

DRBD lets one node be Primary (open the device for writing) unless the resource allows
two primaries (``DrbdOptions/Net/allow-two-primaries yes``, as LinBIT's CSI driver sets it
for RWX block volumes during a KubeVirt live migration). Without it, promoting a second
node fails: its open gets ``EMEDIUMTYPE`` ("Wrong medium type") and DRBD says "Multiple
primaries not allowed by config". The emulator's nodes share one host, so a writer on a
virtual node is played through ``/_emu/resources/{rd}/{node}/role``; the local host's own
openers count as the local node's (or the diskless stand-in's) Primary.
"""

from __future__ import annotations

from emulator import names
from emulator import state as st
from emulator.core import Emulator

TWO_PRIMARIES = "DrbdOptions/Net/allow-two-primaries"
_YES = frozenset({"yes", "true"})


class RoleRefused(Exception):
    """DRBD refused the promotion."""


def two_primaries_allowed(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    """The option resolved like a satellite resolves net options: definition, group, controller."""
    value = rd.props.get(TWO_PRIMARIES)
    rg = emu.rg_of(rd)
    if value is None and rg is not None:
        value = rg.props.get(TWO_PRIMARIES)
    if value is None:
        value = emu.state.controller_props.get(TWO_PRIMARIES)
    return (value or "").lower() in _YES


def primaries(emu: Emulator, rd: st.ResourceDefinition) -> list[str]:
    """Nodes whose resource is Primary now (reported in use)."""
    return [rsc.node for _, rsc in sorted(rd.resources.items()) if emu.in_use_reported(rd, rsc, fresh=True)]


def set_role(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, role: str) -> None:
    """Promote (``Primary``) or demote (``Secondary``) one node's resource; caller holds the lock."""
    if role == "Secondary":
        rsc.in_use_override = None if names.key(rsc.node) == emu.local_key else False
        return
    others = [n for n in primaries(emu, rd) if names.key(n) != names.key(rsc.node)]
    if others and not two_primaries_allowed(emu, rd):
        raise RoleRefused(
            f"Promoting '{rd.name}' on '{rsc.node}' failed: Multiple primaries not allowed by config "
            f"(Primary on {', '.join(others)}; {TWO_PRIMARIES} is not 'yes'): open gives EMEDIUMTYPE"
        )
    rsc.in_use_override = True
