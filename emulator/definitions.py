"""Resource and volume definitions as objects: make, find, deploy and purge them.

Endpoints of several kinds create definitions (an RD POST, a spawn, a snapshot restore, a
backup restore, a LINSTOR-to-LINSTOR receive), so the rules for a new definition and its
volumes live here once, not in one endpoint module the others would import.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from pathlib import Path
from typing import Any

from emulator import names, ops, props
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import DEFAULT_RG
from emulator.core import Emulator

RD = rc.MASK_RSC_DFN
VD = rc.MASK_VLM_DFN
MAX_KIB = 1 << 40


def _name_from_external(emu: Emulator, external: str) -> str:
    """The controller's order: ``LS_<uuid>`` for a UUID, the name itself, a translation, a random one."""
    taken = emu.state.resource_definitions
    try:
        uuidlib.UUID(external)
        candidate = "LS_" + external.replace("-", "_")[:45]
        if candidate.upper() not in taken:
            return candidate
    except ValueError:
        pass
    if names.resource_name_problem(external) is None and external.upper() not in taken:
        return external
    translated = re.sub(r"[^A-Za-z0-9_-]", "_", external)
    if translated and not re.match(r"[A-Za-z_]", translated[0]):
        translated = "_" + translated
    translated = translated[:48]
    if names.resource_name_problem(translated) is None and translated.upper() not in taken:
        return translated
    return "LS_" + uuidlib.uuid4().hex[:40]


def new_rd(
    emu: Emulator,
    name: str,
    *,
    external_name: str = "",
    rd_props: dict[str, str] | None = None,
    rg_name: str | None = None,
    layer_stack: list[str] | None = None,
) -> tuple[st.ResourceDefinition, list[rc.Entry]]:
    """A validated, not yet registered resource definition and its CREATED entry."""
    if not name and external_name:
        name = _name_from_external(emu, external_name)
    problem = names.resource_name_problem(name)
    if problem:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_RSC_NAME,
                f"Invalid resource name: {problem}",
                rc.MASK_CRT,
                RD,
                obj_refs={"RscDfn": name},
            )
        )
    if names.key(name) in emu.state.resource_definitions:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_RSC_DFN,
                f"A resource definition with the name '{name}' already exists",
                rc.MASK_CRT,
                RD,
                details=f"Resource definition: {name}",
                obj_refs={"RscDfn": name},
            )
        )
    props.validate_props(rd_props or {}, rc.MASK_CRT, RD)
    rg = emu.rg(rg_name or DEFAULT_RG, rc.MASK_CRT, RD)
    rd = st.ResourceDefinition(
        name=name,
        external_name=external_name,
        props=dict(rd_props or {}),
        resource_group=rg.name,
        layer_stack=list(layer_stack or []),
        peer_slots=rg.peer_slots or 7,
    )
    entry = rc.success(
        rc.CREATED,
        f"New resource definition '{name}' created.",
        rc.MASK_CRT,
        RD,
        details=f"Resource definition '{name}' UUID is: {rd.uuid}",
        obj_refs={"RscDfn": name, "UUID": rd.uuid},
    )
    return rd, [entry]


def purge_rd(emu: Emulator, rd: st.ResourceDefinition) -> None:
    """Remove an RD with all its resources and data (spawn rollback, RD delete)."""
    for vd in rd.volume_definitions.values():
        if vd.backing:
            emu.detach(vd)
            emu.host(emu.storage.delete, Path(vd.backing), emu.minor_arg(vd))
            vd.backing = None
    rd.resources.clear()
    emu.disks.forget(rd.name)
    emu.state.resource_definitions.pop(names.key(rd.name), None)


def finish_pending_delete(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    """After a reconnect: a definition flagged DELETE whose last resource is gone goes too."""
    if "DELETE" not in rd.flags or rd.resources:
        return False
    purge_rd(emu, rd)
    return True


# ---------------------------------------------------------------------- volume definitions


def vd_number(text: str, op: int = 0) -> int:
    try:
        nr = int(text)
    except ValueError:
        nr = -1
    if not 0 <= nr <= 65534:
        raise rc.ApiFailure(rc.error(rc.FAIL_INVLD_VLM_NR, f"Invalid volume number '{text}'", op, VD))
    return nr


def check_size(size: Any, op: int) -> int:
    if size is None:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_VLM_SIZE, "The volume size (size_kib) is missing.", op, VD)
        )
    if not 4 <= size <= MAX_KIB:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_VLM_SIZE,
                f"Volume size {size} KiB is out of range (4 KiB to {MAX_KIB} KiB).",
                op,
                VD,
            )
        )
    return int(size)


def new_vd(
    emu: Emulator, rd: st.ResourceDefinition, spec: dict[str, Any], minor: int | None = None
) -> list[rc.Entry]:
    """Add a volume definition; deploy it on the RD's existing resources right away."""
    nr = spec.get("volume_number")
    if nr is None:
        nr = 0
        while str(nr) in rd.volume_definitions:
            nr += 1
    nr = vd_number(str(nr), rc.MASK_CRT)
    size = check_size(spec.get("size_kib"), rc.MASK_CRT)
    if str(nr) in rd.volume_definitions:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_VLM_DFN,
                f"A volume definition with the number {nr} already exists in resource definition "
                f"'{rd.name}'.",
                rc.MASK_CRT,
                VD,
                obj_refs={"RscDfn": rd.name, "VlmNr": str(nr)},
            )
        )
    vd_props = dict(spec.get("props") or {})
    props.validate_props(vd_props, rc.MASK_CRT, VD)
    vd = st.VolumeDefinition(
        number=nr,
        size_kib=size,
        props=vd_props,
        flags=list(spec.get("flags") or []),
        minor=emu.next_minor(minor),
    )
    rd.volume_definitions[str(nr)] = vd
    entries = [
        rc.success(
            rc.CREATED,
            f"New volume definition with number '{nr}' of resource definition '{rd.name}' created.",
            rc.MASK_CRT,
            VD,
            details=f"Volume definition with number '{nr}' of resource definition '{rd.name}' "
            f"UUID is: {vd.uuid}",
            obj_refs={"RscDfn": rd.name, "VlmNr": str(nr), "UUID": vd.uuid},
        )
    ]
    try:
        _deploy_new_volume(emu, rd, vd)
    except Exception as exc:
        rd.volume_definitions.pop(str(nr), None)
        for rsc in rd.resources.values():
            rsc.volumes.pop(str(nr), None)
        if vd.backing:
            emu.detach(vd)
            emu.host(emu.storage.delete, Path(vd.backing), emu.minor_arg(vd))
        if isinstance(exc, rc.ApiFailure):
            raise
        raise ops.storage_failure(f"Creating volume {nr} of '{rd.name}'", exc, rc.MASK_CRT, VD) from exc
    return entries


def _deploy_new_volume(emu: Emulator, rd: st.ResourceDefinition, vd: st.VolumeDefinition) -> None:
    diskful = [r for _, r in sorted(rd.resources.items()) if not r.diskless]
    for rsc in rd.resources.values():
        pool = rsc.props.get("StorPoolName", emu.config.pool_name)
        rsc.volumes[str(vd.number)] = st.Volume(number=vd.number, pool=pool)
    if diskful:
        first = diskful[0]
        vd.backing = str(
            emu.storage.create_volume(
                first.node,
                first.props.get("StorPoolName", emu.config.pool_name),
                rd.name,
                vd.number,
                vd.size_kib,
            )
        )
        emu.sync_devices(rd)
        ops._mkfs_if_wanted(emu, rd, vd, first.node)


def find_vd(emu: Emulator, rd: st.ResourceDefinition, text: str, op: int = 0) -> st.VolumeDefinition:
    nr = vd_number(text, op)
    vd = rd.volume_definitions.get(str(nr))
    if vd is None:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_FOUND_VLM_DFN,
                f"Volume definition with number '{nr}' on resource definition '{rd.name}' not found.",
                op,
                VD if op else 0,
                obj_refs={"RscDfn": rd.name, "VlmNr": str(nr)},
            )
        )
    return vd
