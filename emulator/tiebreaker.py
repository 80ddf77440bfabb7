"""The controller's automatic quorum tie-breaker (``CtrlRscAutoTieBreakerHelper``).

A controller starts with ``DrbdOptions/auto-add-quorum-tiebreaker=True`` and DRBD quorum
``majority``. After every change of a DRBD definition's resources it looks again: with an
even number (>= 2) of diskful replicas and no other eligible diskless resource, a diskless
resource flagged ``TIE_BREAKER`` is added on another node with a diskless pool (or a
warning says no node fits); when the condition no longer holds, the tie-breaker goes.
A resource about to be deleted that could serve as tie-breaker is taken over instead.
"""

from __future__ import annotations

from emulator import names
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator

AUTO_TIEBREAKER_KEY = "DrbdOptions/auto-add-quorum-tiebreaker"
QUORUM_KEY = "DrbdOptions/Resource/quorum"
#: What a freshly installed controller has in its own properties.
CONTROLLER_DEFAULTS = {AUTO_TIEBREAKER_KEY: "True", QUORUM_KEY: "majority"}
FLAG = "TIE_BREAKER"

WARN_NOT_ENOUGH_NODES_FOR_TIE_BREAKER = 1013
INFO_PROP_SET = 10002
INFO_TIE_BREAKER_CREATED = 10003
INFO_TIE_BREAKER_DELETING = 10004
INFO_TIE_BREAKER_TAKEOVER = 10006


def _prop(emu: Emulator, rd: st.ResourceDefinition, key: str) -> str:
    """Priority lookup as the controller's: definition, its group, the controller."""
    if key in rd.props:
        return rd.props[key]
    rg = emu.rg_of(rd)
    if rg is not None and key in rg.props:
        return rg.props[key]
    return CONTROLLER_DEFAULTS.get(key, "")


def enabled(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    return _prop(emu, rd, AUTO_TIEBREAKER_KEY).lower() == "true"


def quorum_on(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    return _prop(emu, rd, QUORUM_KEY).lower() not in ("off", "")


def is_tiebreaker(rsc: st.Resource) -> bool:
    return FLAG in rsc.flags


def _uses_drbd(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    if not emu.drbd:
        return False
    stack = rd.layer_stack
    if not stack:
        rg = emu.rg_of(rd)
        stack = (rg.select_filter.get("layer_stack") if rg else None) or ["DRBD", "STORAGE"]
    return "DRBD" in [s.upper() for s in stack]


def _active(rsc: st.Resource) -> bool:
    return "DELETE" not in rsc.flags and "DRBD_DELETE" not in rsc.flags and "INACTIVE" not in rsc.flags


def node_fits(emu: Emulator, rd: st.ResourceDefinition, node: st.Node) -> bool:
    """Whether the autoplacer could put a diskless tie-breaker on this node."""
    if not node.online or {"EVICTED", "EVACUATE"} & set(node.flags):
        return False
    if node.props.get("AutoplaceTarget", "true").lower() == "false":
        return False
    if not any(p.kind == "DISKLESS" for p in emu.pools_of(names.key(node.name))):
        return False
    rg = emu.rg_of(rd)
    allowed = (rg.select_filter.get("node_name_list") if rg else None) or []
    return not allowed or names.key(node.name) in {names.key(n) for n in allowed}


def should_exist(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    """Even number (>= 2) of diskful replicas and no other eligible diskless resource."""
    if not quorum_on(emu, rd) or not _uses_drbd(emu, rd):
        return False
    diskful = diskless = 0
    for rsc in rd.resources.values():
        if not _active(rsc):
            continue
        if not rsc.diskless:
            diskful += 1
        elif not is_tiebreaker(rsc):
            node = emu.state.nodes.get(names.key(rsc.node))
            if node is not None and node_fits(emu, rd, node):
                diskless += 1
    return diskful >= 2 and diskful % 2 == 0 and diskless == 0


def current(rd: st.ResourceDefinition) -> st.Resource | None:
    return next((r for r in rd.resources.values() if is_tiebreaker(r)), None)


def _place(emu: Emulator, rd: st.ResourceDefinition) -> list[rc.Entry]:
    from emulator import ops

    for nk, node in sorted(emu.state.nodes.items()):
        if nk in rd.resources or not node_fits(emu, rd, node):
            continue
        stack = rd.layer_stack or ["DRBD", "STORAGE"]
        ops.deploy(emu, rd, node, diskless=True, stack=stack, extra_flags=(FLAG,))
        return [
            rc.info(
                INFO_TIE_BREAKER_CREATED,
                f"Tie breaker resource '{rd.name}' created on {node.name}",
                obj_refs={"RscDfn": rd.name, "Node": node.name},
            )
        ]
    return [
        rc.warn(
            WARN_NOT_ENOUGH_NODES_FOR_TIE_BREAKER,
            f"Could not find suitable node to automatically create a tie breaking resource for '{rd.name}'.",
            obj_refs={"RscDfn": rd.name},
        )
    ]


def manage(emu: Emulator, rd: st.ResourceDefinition) -> list[rc.Entry]:
    """Add or remove the tie-breaker after the definition's resources changed."""
    if names.key(rd.name) not in emu.state.resource_definitions:
        return []
    tie = current(rd)
    if enabled(emu, rd) and should_exist(emu, rd):
        return _place(emu, rd) if tie is None else []
    if tie is None or not _active(tie):
        return []
    from emulator import ops

    ops.delete_resource_entries(emu, rd, tie)
    return [
        rc.info(
            INFO_TIE_BREAKER_DELETING,
            "Tie breaker marked for deletion",
            obj_refs={"RscDfn": rd.name, "Node": tie.node},
        )
    ]


def before_delete(
    emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, keep_tiebreaker: bool
) -> tuple[list[rc.Entry], bool]:
    """What a resource delete becomes: the entries to answer, and whether the delete goes ahead.

    With ``keep_tiebreaker`` a switched-off automatic tie-breaker is switched on again. Deleting
    the tie-breaker itself: with ``keep_tiebreaker`` it stays (taken over again); without, the
    definition's automatic tie-breaker is switched off and it goes. Deleting another diskless
    resource that could serve as tie-breaker turns it into the tie-breaker instead.
    """
    refs = {"RscDfn": rd.name, "Node": rsc.node}
    entries: list[rc.Entry] = []
    if keep_tiebreaker and not enabled(emu, rd):
        rd.props[AUTO_TIEBREAKER_KEY] = "True"
        entries.append(
            rc.info(
                INFO_PROP_SET, "Autotiebreaker automatically enabled due to --keep-tiebreaker", obj_refs=refs
            )
        )
    if is_tiebreaker(rsc):
        if keep_tiebreaker:
            return [*entries, _takeover_entry(refs)], False
        if enabled(emu, rd):
            rd.props[AUTO_TIEBREAKER_KEY] = "False"
            entries.append(
                rc.info(
                    INFO_PROP_SET,
                    f"Disabling auto-tiebreaker on resource-definition '{rd.name}' as tiebreaker resource "
                    "was manually deleted",
                    obj_refs=refs,
                )
            )
        return entries, True
    if not enabled(emu, rd) or current(rd) is not None:
        return entries, True
    node = emu.state.nodes.get(names.key(rsc.node))
    if node is None or not node_fits(emu, rd, node) or "DRBD_DISKLESS" not in rsc.flags:
        return entries, True
    flags_before = list(rsc.flags)
    rsc.flags.append("DELETE")
    try:
        takeover = should_exist(emu, rd)
    finally:
        rsc.flags = flags_before
    if not takeover:
        return entries, True
    rsc.flags.append(FLAG)
    emu.sync_devices(rd)
    return [*entries, _takeover_entry(refs)], False


def _takeover_entry(refs: dict[str, str]) -> rc.Entry:
    return rc.info(
        INFO_TIE_BREAKER_TAKEOVER,
        "The given resource will not be deleted but will be taken over as a linstor managed tiebreaker "
        "resource.",
        obj_refs=refs,
    )


def make_ordinary(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource) -> bool:
    """make-available on the tie-breaker's node: it becomes an ordinary diskless resource."""
    if not is_tiebreaker(rsc):
        return False
    rsc.flags = [f for f in rsc.flags if f != FLAG]
    emu.sync_devices(rd)
    return True
